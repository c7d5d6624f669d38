import { Kysely, Migrator, PostgresDialect, type Migration, type MigrationProvider } from "kysely";
import pg from "pg";
import type { Database } from "./schema.js";
import * as m0001 from "./migrations/0001-init.js";
import * as m0002 from "./migrations/0002-providers.js";
import * as m0003 from "./migrations/0003-relationships.js";
import * as m0004 from "./migrations/0004-safety.js";
import * as m0005 from "./migrations/0005-moderation.js";
import * as m0006 from "./migrations/0006-sealed-multi-recipient.js";

const INT8_OID = 20;

/** Options for {@link createDatabase}. */
export interface DatabaseOptions {
  /** A `postgres://` connection string. */
  url: string;
  /** Maximum pooled connections (default 10). */
  poolSize?: number;
  /** Called for pool errors on idle clients (e.g. the server restarted). */
  onPoolError?: (err: Error) => void;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
}

/**
 * A Kysely instance over a node-postgres pool. `int8` columns are parsed to JS numbers (queue
 * sequences and millisecond timestamps stay far below 2^53). Call `destroy()` to close the pool.
 */
export function createDatabase(opts: DatabaseOptions): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    application_name: opts.applicationName ?? "switchboard",
    connectionTimeoutMillis: 5_000,
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary"): unknown =>
        oid === INT8_OID
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format ?? "text")) as typeof pg.types.getTypeParser,
    },
  });
  pool.on("error", (err) => opts.onPoolError?.(err));
  // A checked-out client whose connection dies (server restart, admin shutdown) emits 'error'
  // outside any query; without a listener that would crash the process. The query in flight
  // fails on its own, and the pool discards the broken client when it is released.
  pool.on("connect", (client) => {
    client.on("error", (err) => opts.onPoolError?.(err));
    prepareMarkedStatements(client);
  });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Starts the SQL of a statement to run as a named prepared statement: `/* sb:prepare <name> *\/`. */
const PREPARE_MARKER = "/* sb:prepare ";

/**
 * Runs the statements whose text starts with {@link PREPARE_MARKER} as named prepared statements
 * (Kysely sends every query unnamed, so PostgreSQL would parse and plan it on every execution).
 * Only a few hot statements carry the marker: their text is constant (rows travel as arrays), and
 * their generic plans were measured to be as good as the per-execution ones — planning the queue
 * commit took ~0.4 ms, as long as executing it for a dozen rows. Statements whose generic plans
 * are worse (the sender check, the relationship read, and the ack `DELETE … USING unnest(…)`, whose
 * generic plan ran ten times slower) are left unnamed. Needs a connection
 * that keeps session state (PgBouncer in transaction mode: 1.21+ with max_prepared_statements).
 */
function prepareMarkedStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, values] = args;
    if (typeof text === "string" && text.startsWith(PREPARE_MARKER) && args.length === 2) {
      const name = text.slice(PREPARE_MARKER.length, text.indexOf(" ", PREPARE_MARKER.length));
      return query({ name: `sb_${name}`, text, values });
    }
    return query(...args);
  };
}

const MIGRATIONS: Record<string, Migration> = {
  "0001-init": m0001,
  "0002-providers": m0002,
  "0003-relationships": m0003,
  "0004-safety": m0004,
  "0005-moderation": m0005,
  "0006-sealed-multi-recipient": m0006,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/**
 * Applies every pending migration. Safe to run concurrently from several processes: Kysely takes
 * an advisory lock. Throws the first migration error (with the migration name in the message).
 */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`migration ${failed} failed`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

/** Opens `url`, migrates it to the latest schema and closes the connection. */
export async function migrateUrl(url: string): Promise<string[]> {
  const db = createDatabase({ url, poolSize: 1 });
  try {
    return await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
}
