// Export and restore of one app's state to and from a file: the pieces behind `pnpm export` and
// `pnpm restore`, also used by the tests. The core (table rules, snapshot, format) is in
// @switchboard/storage (app-export.ts); this adds files, migrations of the gateways' tables and
// the database connection.
import { once } from "node:events";
import { createReadStream, createWriteStream, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { migrateGateway, type IgDatabase } from "@switchboard/gateway-instagram";
import { migrateGatewayUrl } from "@switchboard/gateway-messenger";
import { migrateWaUrl } from "@switchboard/gateway-whatsapp";
import { AppError, Code } from "@switchboard/errors";
import {
  APP_EXPORT_FORMAT,
  EXPORTABLE_APPS,
  createDatabase,
  exportApp,
  importApp,
  migrateUrl,
  type ExportSummary,
  type ImportSummary,
} from "@switchboard/storage";
import type { Kysely } from "kysely";

/** An app name of `--app`: whatsapp, messenger or instagram. */
export type AppName = "whatsapp" | "messenger" | "instagram";

/** The app number of a name; INVALID_ARGUMENT (UNKNOWN_APP) otherwise. */
export function appNumber(name: string): number {
  const app = EXPORTABLE_APPS[name];
  if (app === undefined)
    throw new AppError(
      Code.InvalidArgument,
      "UNKNOWN_APP",
      `unknown app ${JSON.stringify(name)}: expected one of ${Object.keys(EXPORTABLE_APPS).join(", ")}`,
    );
  return app;
}

/**
 * Brings the database at `url` to the latest schema: the delivery service's migrations, then the
 * gateway tables of `app` (or of all three gateways). Idempotent: applies only what is pending.
 */
export async function migrateAppSchemas(url: string, app: AppName | "all"): Promise<void> {
  await migrateUrl(url);
  if (app === "whatsapp" || app === "all") await migrateWaUrl(url);
  if (app === "messenger" || app === "all") await migrateGatewayUrl(url);
  if (app === "instagram" || app === "all") {
    const db = createDatabase({ url, poolSize: 1 }) as unknown as Kysely<IgDatabase>;
    try {
      await migrateGateway(db);
    } finally {
      await db.destroy();
    }
  }
}

/** Where `--out` writes: the file itself, or `<dir>/<app>-<timestamp>.ndjson` for a directory. */
export function exportPath(out: string, app: AppName, now = new Date()): string {
  let isDirectory = false;
  try {
    isDirectory = statSync(out).isDirectory();
  } catch {
    // Does not exist yet: a file of that name.
  }
  return isDirectory ? join(out, `${app}-${now.toISOString().replace(/[:.]/g, "-")}.ndjson`) : out;
}

/**
 * Writes `app`'s complete state from the database at `url` to the file `path` (JSON lines, see
 * docs/interop.md). The file is complete only when the export succeeded (it ends with a `done` line).
 */
export async function exportAppToFile(url: string, app: AppName, path: string): Promise<ExportSummary> {
  const db = createDatabase({ url, poolSize: 1, applicationName: "switchboard-export" });
  // Written beside the target and renamed when complete: a failed export leaves no file behind.
  const partial = `${path}.partial`;
  const out = createWriteStream(partial, { encoding: "utf8" });
  try {
    const summary = await exportApp(db, appNumber(app), async (line) => {
      if (!out.write(`${line}\n`)) await once(out, "drain");
    });
    out.end();
    await once(out, "finish");
    await rename(partial, path);
    return summary;
  } catch (err) {
    out.destroy();
    await rm(partial, { force: true });
    throw err;
  } finally {
    await db.destroy();
  }
}

/** Reads the header of an export file: which app it holds. INVALID_ARGUMENT when it is none. */
export async function readExportApp(path: string): Promise<AppName> {
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      const header = JSON.parse(line) as { format?: unknown; appName?: unknown };
      if (
        header.format === APP_EXPORT_FORMAT &&
        typeof header.appName === "string" &&
        header.appName in EXPORTABLE_APPS
      )
        return header.appName as AppName;
      break;
    }
  } catch (err) {
    throw new AppError(Code.InvalidArgument, "EXPORT_MALFORMED", `${path} is not an app export`, {
      cause: err,
    });
  } finally {
    lines.close();
  }
  throw new AppError(Code.InvalidArgument, "EXPORT_MALFORMED", `${path} is not an app export`);
}

/**
 * Restores the export in `path` into the database at `url`: migrates it (the delivery service's
 * tables and the exported app's gateway tables), then imports every row in one transaction.
 * The target must be fresh (FAILED_PRECONDITION IMPORT_TARGET_NOT_EMPTY otherwise).
 */
export async function restoreAppFromFile(url: string, path: string): Promise<ImportSummary> {
  const app = await readExportApp(path);
  await migrateAppSchemas(url, app);
  const db = createDatabase({ url, poolSize: 1, applicationName: "switchboard-restore" });
  try {
    return await importApp(db, readLines(path), { expectApp: appNumber(app) });
  } finally {
    await db.destroy();
  }
}

/**
 * The lines of a file. The reader is opened on the first pull: readline emits lines from the
 * moment it is created, and an iterator attached later would miss them.
 */
async function* readLines(path: string): AsyncGenerator<string> {
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  try {
    yield* lines;
  } finally {
    lines.close();
  }
}
