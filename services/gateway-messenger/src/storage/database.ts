import { Kysely, Migrator, PostgresDialect, type Migration, type MigrationProvider } from "kysely";
import pg from "pg";
import * as m0001 from "./migrations/0001-ms-init.js";
import type { GatewayDatabase } from "./schema.js";

/** Options of {@link createGatewayDatabase}. */
export interface GatewayDatabaseOptions {
  /** A `postgres://` connection string. */
  url: string;
  /** Maximum pooled connections (default 10). */
  poolSize?: number;
  /** Called for errors of idle pooled clients (e.g. the server restarted). */
  onPoolError?: (err: Error) => void;
}

/** A Kysely instance for the gateway's `ms_*` tables over a node-postgres pool; `destroy()` closes it. */
export function createGatewayDatabase(opts: GatewayDatabaseOptions): Kysely<GatewayDatabase> {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    application_name: "gateway-messenger",
    connectionTimeoutMillis: 5_000,
  });
  pool.on("error", (err) => opts.onPoolError?.(err));
  return new Kysely<GatewayDatabase>({ dialect: new PostgresDialect({ pool }) });
}

const MIGRATIONS: Record<string, Migration> = { "0001-ms-init": m0001 };
const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/**
 * Applies the gateway's pending migrations. They are tracked in `ms_migrations` (apart from the
 * delivery service's own), so both can migrate one database; Kysely's advisory lock serialises
 * concurrent runs.
 */
export async function migrateGatewayDatabase(db: Kysely<GatewayDatabase>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider,
    migrationTableName: "ms_migrations",
    migrationLockTableName: "ms_migrations_lock",
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`gateway-messenger migration ${failed} failed`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

/** Opens `url`, applies the gateway's migrations and closes the connection. */
export async function migrateGatewayUrl(url: string): Promise<string[]> {
  const db = createGatewayDatabase({ url, poolSize: 1 });
  try {
    return await migrateGatewayDatabase(db);
  } finally {
    await db.destroy();
  }
}
