import pg from "pg";
import { quoteIdent } from "./names.js";

const APPLICATION_NAME = "switchboard-testkit";
const CLONE_ATTEMPTS = 3;
const CLONE_BACKOFF_MS = 25;
const TERMINATE_SESSIONS_SQL =
  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()";

/** Run `fn` on a short-lived connection to `adminUrl`, always closing it. */
async function withAdminClient<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, application_name: APPLICATION_NAME });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** `CREATE DATABASE name`, optionally copied from `template`. */
export async function createDatabase(adminUrl: string, name: string, template?: string): Promise<void> {
  const from = template === undefined ? "" : ` TEMPLATE ${quoteIdent(template)}`;
  await withAdminClient(adminUrl, (client) => client.query(`CREATE DATABASE ${quoteIdent(name)}${from}`));
}

/**
 * Copy `template` into a new database `name`. PostgreSQL refuses to copy a database others are
 * connected to: it waits up to 5 s for them to leave, then fails with 55006 ("source database is
 * being accessed by other users"). This retries that error a few times with a short back-off, so a
 * source held for up to ~15 s still clones; anything longer rejects with the 55006 error.
 */
export async function cloneDatabase(adminUrl: string, name: string, template: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await createDatabase(adminUrl, name, template);
      return;
    } catch (err) {
      if (!isObjectInUse(err) || attempt >= CLONE_ATTEMPTS) throw err;
      await sleep(CLONE_BACKOFF_MS * 2 ** attempt * (0.5 + Math.random()));
    }
  }
}

/** Terminate every session connected to database `name` (other than this one). */
export async function terminateConnections(adminUrl: string, name: string): Promise<void> {
  await withAdminClient(adminUrl, (client) => client.query(TERMINATE_SESSIONS_SQL, [name]));
}

/** Forbid new connections to `name`, so a stray session cannot block clones of a template. */
export async function disallowConnections(adminUrl: string, name: string): Promise<void> {
  await withAdminClient(adminUrl, (client) =>
    client.query(`ALTER DATABASE ${quoteIdent(name)} WITH ALLOW_CONNECTIONS false`),
  );
}

/**
 * Drop database `name` if it exists: terminate its sessions, then `DROP DATABASE … WITH (FORCE)`
 * (PostgreSQL 13+), which also ends sessions that connect in between. Idempotent.
 */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withAdminClient(adminUrl, async (client) => {
    await client.query(TERMINATE_SESSIONS_SQL, [name]);
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
}

/** Names of the databases that start with `prefix` (compared literally, not as a LIKE pattern). */
export async function findDatabases(adminUrl: string, prefix: string): Promise<string[]> {
  return withAdminClient(adminUrl, async (client) => {
    const result = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
      [prefix],
    );
    return result.rows.map((row) => row.datname);
  });
}

function isObjectInUse(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "55006";
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
