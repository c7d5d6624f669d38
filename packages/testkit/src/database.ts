import { test } from "vitest";
import { cloneDatabaseName, databaseNameOf, databaseUrlFor } from "./names.js";
import { cloneDatabase, dropDatabase } from "./postgres-admin.js";
import { requireProvided } from "./provided.js";

/** A database copied from the migrated template; owned by the caller until `drop()`. */
export interface DatabaseClone {
  /** Connection URL of the clone (same server and credentials as the template). */
  readonly url: string;
  /** The clone's database name, `sb_t_<runId>_<random>`. */
  readonly name: string;
  /** Terminate the clone's sessions and drop it. Idempotent. */
  drop(): Promise<void>;
}

let cloneQueue: Promise<unknown> = Promise.resolve();

/**
 * Create a fresh database from the template `createGlobalSetup` migrated
 * (`CREATE DATABASE … TEMPLATE …`). Clones from one worker are serialized and PostgreSQL's 55006
 * "source database is being accessed" is retried, so concurrent tests may call this freely.
 * Throws if the package's vitest config does not wire `createGlobalSetup` as `globalSetup`.
 */
export async function cloneTemplateDatabase(): Promise<DatabaseClone> {
  const templateUrl = requireProvided("postgresTemplateUrl");
  const adminUrl = requireProvided("postgresAdminUrl");
  const templateName = databaseNameOf(templateUrl);
  const name = cloneDatabaseName(templateName);

  const created = cloneQueue.then(() => cloneDatabase(adminUrl, name, templateName));
  cloneQueue = created.catch(() => undefined);
  await created;

  return {
    url: databaseUrlFor(templateUrl, name),
    name,
    drop: () => dropDatabase(adminUrl, name),
  };
}

/**
 * A vitest `test` whose `databaseUrl` fixture is a fresh clone of the template, dropped after the
 * test. Extend it for typed handles, e.g. a `db: Kysely<Database>` built with `withDatabase`.
 */
export const dbTest = test.extend<{ databaseUrl: string }>({
  // eslint-disable-next-line no-empty-pattern -- vitest requires a destructuring pattern here
  databaseUrl: async ({}, use) => {
    const clone = await cloneTemplateDatabase();
    try {
      await use(clone.url);
    } finally {
      await clone.drop();
    }
  },
});
