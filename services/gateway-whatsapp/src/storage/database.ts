// The gateway's connection to PostgreSQL and its own migrations (tracked apart from the delivery
// service's, in `wa_kysely_migration`, so both can share one database).
import { Kysely, Migrator, PostgresDialect, type Migration, type MigrationProvider } from "kysely";
import pg from "pg";
import * as m0001 from "./migrations/0001-wa-init.js";
import type { WaDatabase } from "./schema.js";

/** Options of {@link createWaDatabase}. */
export interface WaDatabaseOptions {
  /** A `postgres://` connection string. */
  url: string;
  /** Maximum pooled connections (default 5). */
  poolSize?: number;
  /** Called for errors of idle pooled clients (e.g. the server restarted). */
  onPoolError?: (err: Error) => void;
}

/** A Kysely instance over a node-postgres pool for the gateway's tables; `destroy()` closes it. */
export function createWaDatabase(opts: WaDatabaseOptions): Kysely<WaDatabase> {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 5,
    application_name: "gateway-whatsapp",
    connectionTimeoutMillis: 5_000,
  });
  pool.on("error", (err) => opts.onPoolError?.(err));
  return new Kysely<WaDatabase>({ dialect: new PostgresDialect({ pool }) });
}

const MIGRATIONS: Record<string, Migration> = { "0001-wa-init": m0001 };
const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/**
 * Applies the gateway's pending migrations (safe to run concurrently: Kysely takes an advisory
 * lock). Uses its own bookkeeping tables so the delivery service's migrations are unaffected.
 */
export async function migrateWaDatabase(db: Kysely<WaDatabase>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider,
    migrationTableName: "wa_kysely_migration",
    migrationLockTableName: "wa_kysely_migration_lock",
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`migration ${failed} failed`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

/** Opens `url`, applies the gateway's migrations and closes the connection. */
export async function migrateWaUrl(url: string): Promise<string[]> {
  const db = createWaDatabase({ url, poolSize: 1 });
  try {
    return await migrateWaDatabase(db);
  } finally {
    await db.destroy();
  }
}
