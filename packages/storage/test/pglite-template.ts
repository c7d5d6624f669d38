import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Kysely } from "kysely";
import { createEmbeddedDatabase, migrateToLatest, type Database } from "../src/index.js";

// Loaded by the globalSetup (vitest's main process) and by test workers: no vitest runtime calls here.

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated PGlite data directory made once per run; copy it (`openPgliteCopy`), never open it. */
    pgliteTemplateDir: string;
  }
}

/** A directory this run created; `remove()` deletes it with everything in it. */
export interface TempDataDir {
  readonly dir: string;
  remove(): Promise<void>;
}

/**
 * Creates a PGlite data directory in a new temporary directory, migrates it and closes it again.
 * This is the slow part of opening PGlite (initdb plus migrations, several seconds), done once per
 * run so that each test file only copies the result.
 */
export async function createPgliteTemplate(): Promise<TempDataDir> {
  const root = await mkdtemp(join(tmpdir(), "sb-pglite-tpl-"));
  const remove = () => rm(root, { recursive: true, force: true });
  try {
    const dir = join(root, "data");
    const db = await createEmbeddedDatabase({ dataDir: dir });
    try {
      await migrateToLatest(db);
    } finally {
      await db.destroy();
    }
    return { dir, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

/**
 * Copies the template into a fresh temporary directory and opens it (about a second, against
 * several for a new one). `close()` closes the database and deletes the copy.
 */
export async function openPgliteCopy(
  templateDir: string,
): Promise<{ db: Kysely<Database>; close(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), "sb-pglite-"));
  const remove = () => rm(root, { recursive: true, force: true });
  try {
    const dataDir = join(root, "data");
    await cp(templateDir, dataDir, { recursive: true });
    const db = await createEmbeddedDatabase({ dataDir });
    return {
      db,
      close: async () => {
        try {
          await db.destroy();
        } finally {
          await remove();
        }
      },
    };
  } catch (err) {
    await remove();
    throw err;
  }
}
