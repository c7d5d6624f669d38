import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";

/**
 * A Kysely instance over a `pg` pool for `databaseUrl` (usually a clone's URL). The caller owns
 * the pool: `await db.destroy()` when done. Dropping the clone first is harmless: the idle sessions
 * it terminates are ignored, and later queries reject.
 * `DB` defaults to an untyped schema; pass the package's `Database` type for typed queries.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped unless the caller names a schema
export function withDatabase<DB = any>(databaseUrl: string): Kysely<DB> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  // drop() terminates idle pooled sessions; unlistened, that 'error' event would crash the worker.
  pool.on("error", () => undefined);
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
}
