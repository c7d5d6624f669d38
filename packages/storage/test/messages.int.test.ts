import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { describe, expect, test } from "vitest";
import {
  commitQueueBatch,
  countQueued,
  deleteMessages,
  findPendingQueues,
  findSendLog,
  readQueue,
  sendLogKey,
  sweepExpired,
  type DeviceRef,
  type QueueInsert,
  type SendLogEntry,
} from "../src/index.js";
import {
  APP_MESSENGER,
  createAccount,
  describeBackends,
  linkDevice,
  plain,
  queueRow,
  queueRows,
} from "./backends.js";

const FAR = Date.now() + 3_600_000;

const logEntry = (d: DeviceRef, clientMessageId: string, messageId = randomUUID()): SendLogEntry => ({
  senderAccountId: d.accountId,
  senderDeviceId: d.deviceId,
  clientMessageId,
  app: 1,
  messageId,
  serverTimestampMs: 1_700_000_000_000,
});
const logKey = (d: DeviceRef, clientMessageId: string) => ({
  senderAccountId: d.accountId,
  senderDeviceId: d.deviceId,
  clientMessageId,
});

describeBackends("message repository", (ctx) => {
  const queue = (rows: QueueInsert[]) => queueRows(ctx.db, rows);
  /** Stores idempotency entries only, as a batch of sends whose rows went nowhere. */
  const logSends = (entries: SendLogEntry[]) =>
    commitQueueBatch(ctx.db, { sendLog: entries, rows: [], logged: [], payloads: [] });
  const read = (d: DeviceRef, after = 0, limit = 100, nowMs = Date.now()) =>
    readQueue(ctx.db, d, after, limit, nowMs);

  test("readQueue returns every field with the same JS types on each backend", async () => {
    const a = await createAccount(ctx.db);
    const sender = await createAccount(ctx.db);
    const row = queueRow(a, {
      type: 3,
      source_account_id: sender.accountId,
      source_device_id: 1,
      source_app: APP_MESSENGER,
      source_provider_id: "acme",
      source_registration_id: 77,
      client_message_id: "cm-1",
      client_timestamp_ms: 1_700_000_000_123,
      server_timestamp_ms: 1_700_000_000_456,
      expires_at_ms: FAR,
      flags: 3,
      group_id: randomUUID(),
      report_tag: new Uint8Array([9, 8, 7]),
      content: new Uint8Array([0, 1, 2, 255]),
    });
    await queue([row]);
    const [m] = await read(a);
    const { payload_id: _, ...expected } = row;
    expect({ ...m, content: plain(m?.content), report_tag: plain(m?.report_tag) }).toEqual({
      ...expected,
      seq: 1,
      content: new Uint8Array([0, 1, 2, 255]),
      report_tag: new Uint8Array([9, 8, 7]),
    });
    expect(typeof m?.seq).toBe("number");
    expect(typeof m?.client_timestamp_ms).toBe("number");
    expect(Buffer.isBuffer(m?.content)).toBe(true);
    expect(Buffer.isBuffer(m?.report_tag)).toBe(true);
  });

  test("readQueue reads after the cursor, up to the limit, and skips expired rows", async () => {
    const a = await createAccount(ctx.db);
    const now = Date.now();
    await queue([
      queueRow(a, { content: Buffer.from("1") }),
      queueRow(a, { content: Buffer.from("2"), expires_at_ms: now - 1 }),
      queueRow(a, { content: Buffer.from("3") }),
      queueRow(a, { content: Buffer.from("4") }),
    ]);
    const text = (ms: Array<{ content: Uint8Array | null }>) =>
      ms.map((m) => Buffer.from(m.content ?? []).toString());
    expect(text(await read(a, 0, 100, now))).toEqual(["1", "3", "4"]);
    expect(text(await read(a, 1, 1, now))).toEqual(["3"]);
    expect(text(await read(a, 3, 100, now))).toEqual(["4"]);
    expect(await read(a, 4, 100, now)).toEqual([]);
    expect(await read({ accountId: randomUUID(), deviceId: 1 })).toEqual([]);
  });

  test("findPendingQueues names the devices with a deliverable message after their cursor", async () => {
    const now = Date.now();
    const fresh = await createAccount(ctx.db);
    const behind = await createAccount(ctx.db);
    const caughtUp = await createAccount(ctx.db);
    const expiredOnly = await createAccount(ctx.db);
    const heldOnly = await createAccount(ctx.db);
    const empty = await createAccount(ctx.db);
    await queue([
      queueRow(fresh, { content: Buffer.from("1") }),
      queueRow(behind, { content: Buffer.from("1") }),
      queueRow(behind, { content: Buffer.from("2") }),
      queueRow(caughtUp, { content: Buffer.from("1") }),
      queueRow(expiredOnly, { content: Buffer.from("1"), expires_at_ms: now - 1 }),
      queueRow(heldOnly, { content: Buffer.from("1"), flags: 16 }),
    ]);
    const probe = (d: DeviceRef, afterSeq: number) => ({ ...d, afterSeq });
    const found = await findPendingQueues(
      ctx.db,
      [
        probe(fresh, 0),
        probe(behind, 1),
        probe(caughtUp, 1),
        probe(expiredOnly, 0),
        probe(heldOnly, 0),
        probe(empty, 0),
        probe({ accountId: fresh.accountId, deviceId: 2 }, 0),
      ],
      now,
    );
    const key = (d: DeviceRef) => `${d.accountId}/${d.deviceId}`;
    expect(found.map(key).sort()).toEqual([fresh, behind].map(key).sort());
    expect(await findPendingQueues(ctx.db, [], now)).toEqual([]);
  });

  test("readQueue resolves a group payload stored once for several devices", async () => {
    const a = await createAccount(ctx.db);
    const b = await createAccount(ctx.db);
    const messageId = randomUUID();
    const groupId = randomUUID();
    const rows = [a, b].map((d) =>
      queueRow(d, { message_id: messageId, group_id: groupId, content: null, payload_id: messageId }),
    );
    await commitQueueBatch(ctx.db, {
      sendLog: [logEntry(a, "group-send", messageId)],
      rows,
      logged: rows.map(() => true),
      payloads: [{ messageId, app: 1, content: new Uint8Array([4, 2]) }],
    });
    for (const d of [a, b]) {
      const [m] = await read(d);
      expect(m).toMatchObject({ message_id: messageId, group_id: groupId });
      expect(plain(m?.content)).toEqual(new Uint8Array([4, 2]));
      expect(Buffer.isBuffer(m?.content)).toBe(true);
    }
  });

  test("deleteMessages removes acknowledged messages of the right device only", async () => {
    const a = await createAccount(ctx.db);
    const a2 = await linkDevice(ctx.db, a.accountId);
    const sender = await createAccount(ctx.db);
    const mine = queueRow(a, {
      source_account_id: sender.accountId,
      source_device_id: 1,
      client_message_id: "c1",
      client_timestamp_ms: 123,
      server_timestamp_ms: 456,
      flags: 64 | 1,
    });
    const other = queueRow(a2);
    const kept = queueRow(a);
    await queue([mine, other, kept]);
    const deleted = await ctx.db.transaction().execute((trx) =>
      deleteMessages(trx, [
        { ...a, messageId: mine.message_id },
        { ...a, messageId: other.message_id }, // another device's message: not this device's to ack
        { ...a, messageId: randomUUID() },
      ]),
    );
    expect(deleted).toEqual([
      {
        account_id: a.accountId,
        device_id: 1,
        message_id: mine.message_id,
        app: 1,
        type: 1,
        source_account_id: sender.accountId,
        source_device_id: 1,
        client_message_id: "c1",
        client_timestamp_ms: 123,
        server_timestamp_ms: 456,
        group_id: null,
        // The flags say whether the sender wants a server delivery receipt (64: no).
        flags: 64 | 1,
      },
    ]);
    expect((await read(a)).map((m) => m.message_id)).toEqual([kept.message_id]);
    expect((await read(a2)).map((m) => m.message_id)).toEqual([other.message_id]);
    expect(await ctx.db.transaction().execute((trx) => deleteMessages(trx, []))).toEqual([]);
  });

  test("countQueued counts each device's queue, zero for an empty one", async () => {
    const a = await createAccount(ctx.db);
    const a2 = await linkDevice(ctx.db, a.accountId);
    await queue([queueRow(a), queueRow(a), queueRow(a, { expires_at_ms: 1 })]);
    const counts = await countQueued(ctx.db, [a, a2]);
    expect(counts).toEqual(
      new Map([
        [`${a.accountId}/1`, 3],
        [`${a.accountId}/${a2.deviceId}`, 0],
      ]),
    );
    expect(await countQueued(ctx.db, [])).toEqual(new Map());
  });

  test("sweepExpired deletes expired rows up to the limit, orphaned payloads and old send log entries", async () => {
    const a = await createAccount(ctx.db);
    const now = Date.now();
    await queue([
      queueRow(a, { expires_at_ms: now - 3 }),
      queueRow(a, { expires_at_ms: now - 2 }),
      queueRow(a, { expires_at_ms: now - 1 }),
      queueRow(a, { expires_at_ms: FAR }),
    ]);
    const orphan = randomUUID();
    const young = randomUUID();
    const referenced = randomUUID();
    // Three group sends (their payloads) of which one still has a queued row, plus two entries.
    await commitQueueBatch(ctx.db, {
      sendLog: [
        logEntry(a, "orphan", orphan),
        logEntry(a, "young", young),
        logEntry(a, "referenced", referenced),
      ],
      rows: [queueRow(a, { content: null, payload_id: referenced, message_id: referenced })],
      logged: [true],
      payloads: [orphan, young, referenced].map((messageId, i) => ({
        messageId,
        app: 1,
        content: new Uint8Array([i]),
      })),
    });
    await logSends([logEntry(a, "old"), logEntry(a, "new")]);
    await sql`UPDATE group_payloads SET created_at = now() - interval '2 minutes' WHERE message_id <> ${young}`.execute(
      ctx.db,
    );
    await sql`UPDATE send_log SET created_at = now() - interval '25 hours' WHERE client_message_id = 'old'`.execute(
      ctx.db,
    );

    const first = await sweepExpired(ctx.db, now, 2, 24 * 3_600_000);
    expect(first).toEqual({ expired: 2, payloads: 1, sendLog: 1 });
    expect(await sweepExpired(ctx.db, now, 2, 24 * 3_600_000)).toEqual({
      expired: 1,
      payloads: 0,
      sendLog: 0,
    });
    expect(await sweepExpired(ctx.db, now, 2, 24 * 3_600_000)).toEqual({
      expired: 0,
      payloads: 0,
      sendLog: 0,
    });
    expect(await countQueued(ctx.db, [a])).toEqual(new Map([[`${a.accountId}/1`, 2]]));
    const payloads = await ctx.db.selectFrom("group_payloads").select("message_id").execute();
    expect(payloads.map((p) => p.message_id).sort()).toEqual([young, referenced].sort());
    const log = await findSendLog(ctx.db, [logKey(a, "old"), logKey(a, "new")]);
    expect([...log.keys()]).toEqual([sendLogKey(a.accountId, 1, "new")]);
  });

  describe("send log", () => {
    test("findSendLog answers a retry with the original message id and timestamp", async () => {
      const a = await createAccount(ctx.db);
      const messageId = randomUUID();
      await logSends([logEntry(a, "retry-me", messageId)]);
      const found = await findSendLog(ctx.db, [logKey(a, "retry-me"), logKey(a, "never-sent")]);
      expect(found).toEqual(
        new Map([
          [sendLogKey(a.accountId, 1, "retry-me"), { messageId, serverTimestampMs: 1_700_000_000_000 }],
        ]),
      );
      expect(await findSendLog(ctx.db, [])).toEqual(new Map());
    });
  });
});
