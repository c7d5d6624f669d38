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
    // Named statements are only the marked ones below, whose generic plans were checked to be the
    // custom plans' equals; without this PostgreSQL kept re-planning the sender check on every
    // execution (0.1 ms each) because its cost estimate favoured the custom plan.
    // No sequential scans where an index serves: every hot statement is a key lookup, and a plan
    // made while a table's statistics said it was nearly empty (a fresh install, or before
    // autovacuum's next ANALYZE) scanned send_log and relationships for every probe and stayed
    // cached while they grew — at 2,000 msg/s PostgreSQL went to 1.5 cores and latency to seconds.
    // A table with no usable index is still scanned. Queued first on the new connection, so both
    // are in effect before any statement runs.
    void client
      .query("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
      .catch((err: unknown) => {
        opts.onPoolError?.(err instanceof Error ? err : new Error(String(err)));
      });
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
 * commit took ~0.4 ms, as long as executing it for a dozen rows — and each connection forces
 * generic plans for them (`plan_cache_mode`). Statements whose generic plans are worse (the ack
 * `DELETE … USING unnest(…)`, whose generic plan ran ten times slower) are left unnamed. Needs a connection
 * that keeps session state (PgBouncer in transaction mode: 1.21+ with max_prepared_statements).
 */
function prepareMarkedStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, raw] = args;
    if (typeof text !== "string" || args.length !== 2 || !Array.isArray(raw)) return query(...args);
    const values = raw.map(arrayLiteral);
    if (text.startsWith(PREPARE_MARKER)) {
      const name = text.slice(PREPARE_MARKER.length, text.indexOf(" ", PREPARE_MARKER.length));
      return query({ name: `sb_${name}`, text, values });
    }
    return query(text, values);
  };
}

const NEEDS_ESCAPE = /["\\]/;
/** Elements PostgreSQL reads unquoted the same as quoted: uuids, numbers, plain identifiers. */
const BARE = /^[\w.:+-]+$/;

/**
 * A one-dimensional array parameter of strings, numbers, bigints, booleans and nulls as the
 * PostgreSQL array literal node-postgres would build for it (the same elements, quoted and escaped
 * where PostgreSQL needs it), built in one pass: the hot statements carry their rows as a few dozen
 * arrays, and node-postgres's per-element formatting (two regular-expression replacements per
 * element) was a visible share of the delivery service's CPU, and building the text by appending
 * to a string allocated two string pieces per element (~10 % of everything the delivery service
 * allocated). Anything else (nested arrays, Buffers, dates, objects) is returned unchanged for
 * node-postgres to format.
 */
export function arrayLiteral(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  const parts: Array<string | number | bigint> = new Array<string | number | bigint>(value.length);
  for (let i = 0; i < value.length; i++) {
    const v: unknown = value[i];
    if (v === null || v === undefined) parts[i] = "NULL";
    else if (typeof v === "string") {
      if (BARE.test(v) && !(v.length === 4 && v.toLowerCase() === "null")) parts[i] = v;
      else parts[i] = NEEDS_ESCAPE.test(v) ? `"${v.replace(/[\\"]/g, "\\$&")}"` : `"${v}"`;
    } else if (typeof v === "number" || typeof v === "bigint") parts[i] = v;
    else if (typeof v === "boolean") parts[i] = v ? "true" : "false";
    else return value;
  }
  return `{${parts.join(",")}}`;
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
