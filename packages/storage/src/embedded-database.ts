import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PGlite, types } from "@electric-sql/pglite";
import { AppError, Code } from "@switchboard/errors";
import {
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  sql,
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from "kysely";
import { PGliteDialect } from "kysely-pglite-dialect";
import type { Database } from "./schema.js";

// The PGlite data directory that keeps everything in memory (gone after destroy()).
const IN_MEMORY = "memory://";
// Holds the pid of the process that has the data directory open (PGlite itself takes no lock).
const LOCK_FILE = "switchboard.lock";
const openInThisProcess = new Set<string>();

/** Options for {@link createEmbeddedDatabase}. */
export interface EmbeddedDatabaseOptions {
  /**
   * Directory holding the data files (created if missing; reopening it finds the data again), or
   * `"memory://"` for a throwaway database. One process at a time may open a directory.
   */
  dataDir: string;
}

/**
 * A Kysely instance over an embedded PostgreSQL 17 (PGlite, compiled to WebAssembly) in the same
 * process: the same SQL and the same row types as {@link createDatabase} (`int8` → number,
 * `bytea` → Buffer, `timestamptz` → Date), so repositories and services run unchanged. PGlite is
 * a single connection: queries and whole transactions take turns (a transaction holds the
 * connection until COMMIT or ROLLBACK), so a transaction callback must use its `trx` only — a
 * query on `db` inside it would wait forever. Costs about 0.9 GB of memory; opening a new data
 * directory takes seconds (initdb), reopening one well under a second. A directory may be open in
 * one place at a time: otherwise throws FAILED_PRECONDITION (DATA_DIR_IN_USE). `destroy()` waits
 * for work already queued, then closes the database; queries after that reject.
 */
export async function createEmbeddedDatabase(opts: EmbeddedDatabaseOptions): Promise<Kysely<Database>> {
  let dataDir = opts.dataDir;
  let unlock = async () => {};
  if (dataDir !== IN_MEMORY) {
    dataDir = resolve(dataDir.startsWith("file://") ? dataDir.slice("file://".length) : dataDir);
    await mkdir(dataDir, { recursive: true });
    unlock = await lockDataDir(dataDir);
  }
  let pglite: PGlite | undefined;
  try {
    pglite = await PGlite.create(dataDir, {
      // The node-postgres types createDatabase produces. PGlite hands parsers the text form; bytea is
      // in PostgreSQL's default hex output (`\x0a0b…`), which is also what node-postgres decodes.
      parsers: {
        [types.INT8]: (value: string) => Number(value),
        [types.BYTEA]: (value: string) => Buffer.from(value.slice(2), "hex"),
      },
    });
    const db = new Kysely<Database>({ dialect: new EmbeddedDialect(pglite, unlock) });
    // Kysely initialises a driver on first use and destroy() skips one never used; use it now so
    // destroy() always closes PGlite (and flushes the data directory).
    await sql`SELECT 1`.execute(db);
    return db;
  } catch (err) {
    await pglite?.close().catch(() => undefined);
    await unlock();
    throw err;
  }
}

/**
 * Marks `dataDir` as open by this process, since two PGlite instances on one directory would
 * corrupt it. A lock left by a process that no longer runs is taken over. Throws
 * FAILED_PRECONDITION (DATA_DIR_IN_USE) while another live process, or this one, has it open.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const inUse = (by: string) =>
    new AppError(
      Code.FailedPrecondition,
      "DATA_DIR_IN_USE",
      `embedded database ${dataDir} is in use by ${by}`,
    );
  if (openInThisProcess.has(dataDir)) throw inUse("this process");
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 1; ; attempt++) {
    try {
      await writeFile(path, String(process.pid), { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 1) throw err;
      const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isRunning(pid)) {
        throw inUse(`process ${pid}`);
      }
      await rm(path, { force: true }); // left behind by a process that is gone
    }
  }
  openInThisProcess.add(dataDir);
  return async () => {
    openInThisProcess.delete(dataDir);
    await rm(path, { force: true });
  };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** kysely-pglite-dialect, with the driver wrapped by {@link EmbeddedDriver}. */
class EmbeddedDialect implements Dialect {
  readonly #inner: PGliteDialect;
  readonly #pglite: PGlite;
  readonly #onDestroyed: () => Promise<void>;

  constructor(pglite: PGlite, onDestroyed: () => Promise<void>) {
    this.#pglite = pglite;
    this.#inner = new PGliteDialect(pglite);
    this.#onDestroyed = onDestroyed;
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createDriver(): Driver {
    return new EmbeddedDriver(this.#inner.createDriver(), this.#pglite, this.#onDestroyed);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

/**
 * kysely-pglite-dialect's driver already serializes use of the one connection (acquireConnection
 * resolves only after the previous holder released it, first come first served). This adds what
 * it lacks: queries without parameters go through the simple query protocol, as node-postgres
 * sends them (so a migration may hold several statements), and `destroy()` lets queued work
 * finish instead of leaving it waiting forever.
 */
class EmbeddedDriver implements Driver {
  readonly #inner: Driver;
  readonly #pglite: PGlite;
  readonly #onDestroyed: () => Promise<void>;
  #closing = false;

  constructor(inner: Driver, pglite: PGlite, onDestroyed: () => Promise<void>) {
    this.#inner = inner;
    this.#pglite = pglite;
    this.#onDestroyed = onDestroyed;
  }

  async init(): Promise<void> {
    await this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    if (this.#closing) throw new Error("the embedded database is closed");
    return new EmbeddedConnection(await this.#inner.acquireConnection(), this.#pglite);
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await this.#inner.releaseConnection(unwrap(connection));
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await this.#inner.beginTransaction(connection, settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await this.#inner.commitTransaction(connection);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await this.#inner.rollbackTransaction(connection);
  }

  async destroy(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // Queue behind everyone already waiting: they run to completion, then the database closes.
    await this.#inner.acquireConnection();
    try {
      await this.#inner.destroy();
    } finally {
      await this.#onDestroyed();
    }
  }
}

class EmbeddedConnection implements DatabaseConnection {
  constructor(
    readonly inner: DatabaseConnection,
    private readonly pglite: PGlite,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    if (query.parameters.length > 0) return this.inner.executeQuery<R>(query);
    const results = await this.pglite.exec(query.sql);
    // Like node-postgres under Kysely: several statements yield no rows.
    const [only] = results.length === 1 ? results : [];
    const rows = (only?.rows ?? []) as R[];
    return only?.affectedRows ? { rows, numAffectedRows: BigInt(only.affectedRows) } : { rows };
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

function unwrap(connection: DatabaseConnection): DatabaseConnection {
  return connection instanceof EmbeddedConnection ? connection.inner : connection;
}
