import { randomUUID } from "node:crypto";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@switchboard/errors";
import { sql } from "kysely";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  commitQueueBatch,
  createEmbeddedDatabase,
  findAccountById,
  isUniqueViolation,
  migrateToLatest,
  pgErrorCode,
  readQueue,
} from "../src/index.js";
import {
  createAccount,
  describeBackends,
  pgliteTemplateDir,
  queuedKey,
  queueRow,
  queueRows,
} from "./backends.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeBackends("database behaviour the repositories rely on", (ctx) => {
  test("concurrent transactions neither interleave nor see each other's rollbacks", async () => {
    await sql`CREATE TABLE IF NOT EXISTS t_counter (id int PRIMARY KEY, n int NOT NULL)`.execute(ctx.db);
    await sql`CREATE TABLE IF NOT EXISTS t_log (i int NOT NULL)`.execute(ctx.db);
    await sql`TRUNCATE t_counter, t_log`.execute(ctx.db);
    await sql`INSERT INTO t_counter VALUES (1, 0)`.execute(ctx.db);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        ctx.db.transaction().execute(async (trx) => {
          const { rows } = await sql<{ n: number }>`SELECT n FROM t_counter WHERE id = 1 FOR UPDATE`.execute(
            trx,
          );
          await sql`INSERT INTO t_log VALUES (${i})`.execute(trx);
          await sleep(2); // let the other transactions' statements try to run in between
          await sql`UPDATE t_counter SET n = ${(rows[0]?.n ?? 0) + 1} WHERE id = 1`.execute(trx);
          if (i % 3 === 0) throw new Error(`rollback ${i}`);
        }),
      ),
    );
    expect(outcomes.filter((o) => o.status === "rejected")).toHaveLength(4);
    const { rows: counter } = await sql<{ n: number }>`SELECT n FROM t_counter`.execute(ctx.db);
    expect(counter).toEqual([{ n: 8 }]);
    const { rows: log } = await sql<{ i: number }>`SELECT i FROM t_log ORDER BY i`.execute(ctx.db);
    expect(log.map((r) => r.i)).toEqual([1, 2, 4, 5, 7, 8, 10, 11]);
  });

  test("a query without parameters may hold several statements, as migrations do", async () => {
    await sql`DROP TABLE IF EXISTS t_multi; CREATE TABLE t_multi (x int); INSERT INTO t_multi VALUES (7)`.execute(
      ctx.db,
    );
    expect((await sql<{ x: number }>`SELECT x FROM t_multi`.execute(ctx.db)).rows).toEqual([{ x: 7 }]);
  });

  test("parameters and results have node-postgres types: arrays of bytes, int8, timestamptz", async () => {
    const r = await sql<{ b: Uint8Array | null; id: string | null; n: number; at: Date }>`
      SELECT * FROM unnest(
        ${[Buffer.from([1, 2]), new Uint8Array([3]), null]}::bytea[],
        ${[randomUUID(), null, randomUUID()]}::uuid[],
        ${[2 ** 40, -1, 0]}::bigint[],
        ${[new Date(0), new Date(1_700_000_000_123), new Date()]}::timestamptz[]
      ) AS x(b, id, n, at)
    `.execute(ctx.db);
    expect(r.rows.map((x) => x.b && [...x.b])).toEqual([[1, 2], [3], null]);
    expect(r.rows.every((x) => x.b === null || Buffer.isBuffer(x.b))).toBe(true);
    expect(r.rows.map((x) => x.n)).toEqual([2 ** 40, -1, 0]);
    expect(r.rows[1]?.at).toEqual(new Date(1_700_000_000_123));
    expect(r.rows[1]?.id).toBeNull();
    const scalar = await sql<{
      b: Uint8Array;
      n: number;
    }>`SELECT ${new Uint8Array([9])}::bytea AS b, count(*) AS n FROM (VALUES (1), (2)) v`.execute(ctx.db);
    expect(scalar.rows[0]?.n).toBe(2);
    expect(Buffer.isBuffer(scalar.rows[0]?.b)).toBe(true);
  });

  test("errors carry the PostgreSQL SQLSTATE", async () => {
    const a = await createAccount(ctx.db);
    const dup = await ctx.db
      .insertInto("accounts")
      .values({ id: a.accountId, app: 1, handle: "dup" })
      .execute()
      .catch((e: unknown) => e);
    expect(isUniqueViolation(dup)).toBe(true);
    expect(pgErrorCode(await sql`SELECT 1 / 0`.execute(ctx.db).catch((e: unknown) => e))).toBe("22012");
  });

  test("the queue-depth estimate the delivery metrics read answers with a number", async () => {
    const a = await createAccount(ctx.db);
    await queueRows(ctx.db, [queueRow(a)]);
    const r = await sql<{ depth: number }>`
      SELECT COALESCE(n_live_tup, 0)::bigint AS depth FROM pg_stat_user_tables WHERE relname = 'queued_messages'
    `.execute(ctx.db);
    // Statistics arrive late (and on PGlite are lost on close), so this is an estimate; it must not fail.
    expect(typeof r.rows[0]?.depth).toBe("number");
  });
});

describe("createEmbeddedDatabase", () => {
  test("refuses a data directory another running process has open, before starting PGlite", async () => {
    const root = await mkdtemp(join(tmpdir(), "sb-pglite-"));
    onTestFinished(() => rm(root, { recursive: true, force: true }));
    const dataDir = join(root, "nested", "data"); // created if missing
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, "switchboard.lock"), String(process.ppid));
    await expect(createEmbeddedDatabase({ dataDir })).rejects.toMatchObject({
      code: Code.FailedPrecondition,
      reason: "DATA_DIR_IN_USE",
    });
  });

  test("keeps data in its directory across close and reopen, including writes queued at close", async () => {
    const root = await mkdtemp(join(tmpdir(), "sb-pglite-"));
    onTestFinished(() => rm(root, { recursive: true, force: true }));
    const dataDir = join(root, "data");

    // A migrated directory (a copy of the run's template; the globalSetup creates that one from
    // nothing) with a lock left by a process that is gone: the lock is taken over.
    await cp(pgliteTemplateDir(), dataDir, { recursive: true });
    await writeFile(join(dataDir, "switchboard.lock"), "2147483646");
    const db = await createEmbeddedDatabase({ dataDir });
    await expect(createEmbeddedDatabase({ dataDir })).rejects.toMatchObject({ reason: "DATA_DIR_IN_USE" });
    const device = await createAccount(db);
    const account = await findAccountById(db, device.accountId);
    const rows = [queueRow(device, { content: Buffer.from("persisted") }), queueRow(device)];
    const queued = db
      .transaction()
      .execute((trx) =>
        commitQueueBatch(trx, { sendLog: [], rows, logged: rows.map(() => false), payloads: [] }),
      );
    // destroy() lets work already queued on the one connection finish, then refuses new work.
    await db.destroy();
    const committed = await queued;
    expect(rows.map((r) => committed.queued.get(queuedKey(r))?.seq)).toEqual([1, 2]);
    await expect(findAccountById(db, device.accountId)).rejects.toThrow();

    const reopened = await createEmbeddedDatabase({ dataDir });
    onTestFinished(() => reopened.destroy());
    expect(await migrateToLatest(reopened)).toEqual([]);
    expect(await findAccountById(reopened, device.accountId)).toEqual(account);
    const messages = await readQueue(reopened, device, 0, 10, Date.now());
    expect(messages.map((m) => m.message_id)).toEqual(rows.map((r) => r.message_id));
    expect(Buffer.from(messages[0]?.content ?? []).toString()).toBe("persisted");
  });
});
