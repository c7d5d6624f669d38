import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { describe, expect, test } from "vitest";
import {
  commitQueueBatch,
  deleteDevice,
  findSendLog,
  insertGroup,
  listMembersOfGroups,
  listQueueDevices,
  readSendFacts,
  readSendPolicies,
  setRelationship,
  pgErrorCode,
  readQueue,
  sendLogKey,
  type DeviceRef,
  type QueueBatch,
  type QueueBatchResult,
  type QueueInsert,
  type SendLogEntry,
} from "../src/index.js";
import {
  APP_MESSENGER,
  APP_WHATSAPP,
  createAccount,
  describeBackends,
  linkDevice,
  plain,
  queuedKey,
  queueRow,
} from "./backends.js";

const SERVER_TS = 1_700_000_000_000;

/** A one-to-one send: its idempotency entry and one row per target, all with the send's message id. */
function oneToOne(sender: DeviceRef, clientMessageId: string, targets: readonly DeviceRef[]) {
  const messageId = randomUUID();
  const entry: SendLogEntry = {
    senderAccountId: sender.accountId,
    senderDeviceId: sender.deviceId,
    clientMessageId,
    app: APP_WHATSAPP,
    messageId,
    serverTimestampMs: SERVER_TS,
  };
  const rows = targets.map((t) =>
    queueRow(t, {
      message_id: messageId,
      source_account_id: sender.accountId,
      source_device_id: sender.deviceId,
      client_message_id: clientMessageId,
      server_timestamp_ms: SERVER_TS,
    }),
  );
  return { messageId, entry, rows };
}
type Send = ReturnType<typeof oneToOne>;

/** A group send: rows point at one shared payload instead of carrying the ciphertext. */
function groupSend(
  sender: DeviceRef,
  clientMessageId: string,
  targets: readonly DeviceRef[],
  content: Uint8Array,
) {
  const s = oneToOne(sender, clientMessageId, targets);
  const groupId = randomUUID();
  return {
    ...s,
    rows: s.rows.map((r) => ({ ...r, group_id: groupId, content: null, payload_id: s.messageId })),
    payload: { messageId: s.messageId, app: APP_WHATSAPP, content },
  };
}

/** A batch of sends (rows logged) followed by delivery receipts (rows not logged). */
function batchOf(
  sends: readonly Send[],
  receipts: readonly QueueInsert[] = [],
  payloads: QueueBatch["payloads"] = [],
): QueueBatch {
  const sendRows = sends.flatMap((s) => s.rows);
  return {
    sendLog: sends.map((s) => s.entry),
    rows: [...sendRows, ...receipts],
    logged: [...sendRows.map(() => true), ...receipts.map(() => false)],
    payloads,
  };
}

const seqOf = (result: QueueBatchResult, row: QueueInsert) => result.queued.get(queuedKey(row))?.seq;
/** The rejections among settled outcomes: each one's SQLSTATE, or the error itself. */
const failures = (outcomes: ReadonlyArray<PromiseSettledResult<unknown>>): unknown[] =>
  outcomes.flatMap((o): unknown[] => (o.status === "rejected" ? [pgErrorCode(o.reason) ?? o.reason] : []));
const key = (d: DeviceRef, clientMessageId: string) => ({ ...d, clientMessageId });

describeBackends("queue batch repository", (ctx) => {
  const checkSenders = async (senders: Parameters<typeof readSendFacts>[1]["senders"]) =>
    (await readSendFacts(ctx.db, { senders, destinations: [], pairs: [], policyAccounts: [] })).senders;
  const commit = (batch: QueueBatch) => commitQueueBatch(ctx.db, batch);
  const read = (d: DeviceRef) => readQueue(ctx.db, d, 0, 1_000, Date.now());
  const count = async (table: "send_log" | "group_payloads" | "queued_messages") => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(
      ctx.db,
    );
    return rows[0]?.n;
  };

  describe("the sender check of readSendFacts", () => {
    test("reports each sender's registration id index-aligned with the keys, undefined for a removed device", async () => {
      const a = await createAccount(ctx.db, { registrationId: 11 });
      const a2 = await linkDevice(ctx.db, a.accountId);
      const b = await createAccount(ctx.db, { app: APP_MESSENGER, handle: "4242", registrationId: 22 });
      expect(await deleteDevice(ctx.db, a.accountId, a2.deviceId)).toBe(true);

      const checked = await checkSenders([
        key(b, "x"),
        key(a2, "x"),
        key(a, "y"),
        key({ accountId: randomUUID(), deviceId: 1 }, "x"),
        key(b, "x"),
      ]);
      expect(checked).toEqual([
        { registrationId: 22, earlier: undefined },
        { registrationId: undefined, earlier: undefined },
        { registrationId: 11, earlier: undefined },
        { registrationId: undefined, earlier: undefined },
        { registrationId: 22, earlier: undefined },
      ]);
      expect(await checkSenders([])).toEqual([]);
    });

    test("returns the earlier send of an idempotency key already logged, for that sender device only", async () => {
      const a = await createAccount(ctx.db);
      const a2 = await linkDevice(ctx.db, a.accountId);
      const b = await createAccount(ctx.db);
      const sent = oneToOne(a, "sent", [b]);
      const byRemoved = oneToOne(a2, "by-removed", [b]);
      await commit(batchOf([sent, byRemoved]));
      await deleteDevice(ctx.db, a.accountId, a2.deviceId);

      const checked = await checkSenders([
        key(a, "fresh"),
        key(a, "sent"),
        key(b, "sent"), // same client message id, another sender
        key({ accountId: a.accountId, deviceId: 1_000 }, "sent"),
        key(a2, "by-removed"),
      ]);
      const earlier = (s: Send) => ({ messageId: s.messageId, serverTimestampMs: SERVER_TS });
      expect(checked).toEqual([
        { registrationId: a.registrationId, earlier: undefined },
        { registrationId: a.registrationId, earlier: earlier(sent) },
        { registrationId: b.registrationId, earlier: undefined },
        { registrationId: undefined, earlier: undefined },
        // The idempotency entry outlives its device.
        { registrationId: undefined, earlier: earlier(byRemoved) },
      ]);
      expect(typeof checked[1]?.earlier?.serverTimestampMs).toBe("number");
    });
  });

  test("readSendFacts answers the sender check, and exactly what the separate device and policy reads answer", async () => {
    const a = await createAccount(ctx.db, { registrationId: 11 });
    const a2 = await linkDevice(ctx.db, a.accountId);
    const b = await createAccount(ctx.db, { app: APP_MESSENGER, handle: "777", registrationId: 22 });
    const c = await createAccount(ctx.db);
    const a3 = await linkDevice(ctx.db, a.accountId);
    const sent = oneToOne(a, "sent", [b, c]);
    await commit(batchOf([sent, oneToOne(b, "m2", [a, a2, a3])]));
    await deleteDevice(ctx.db, a.accountId, a2.deviceId);
    await setRelationship(ctx.db, { owner: b.accountId, peer: a.accountId, app: APP_MESSENGER, state: 2 });
    await setRelationship(ctx.db, { owner: a.accountId, peer: c.accountId, app: APP_WHATSAPP, state: 1 });

    const senders = [key(a, "sent"), key(a2, "x"), key(b, "fresh"), key(a, "sent")];
    const destinations = [c.accountId, a.accountId, b.accountId, randomUUID()];
    const pairs = [
      { owner: b.accountId, peer: a.accountId },
      { owner: a.accountId, peer: b.accountId },
      { owner: a.accountId, peer: c.accountId },
    ];
    const policyAccounts = [a.accountId, b.accountId, randomUUID()];
    const facts = await readSendFacts(ctx.db, { senders, destinations, pairs, policyAccounts });
    const earlier = { messageId: sent.messageId, serverTimestampMs: SERVER_TS };
    expect(facts.senders).toEqual([
      { registrationId: 11, earlier },
      { registrationId: undefined, earlier: undefined },
      { registrationId: 22, earlier: undefined },
      { registrationId: 11, earlier },
    ]);
    expect(facts.devices).toEqual(await listQueueDevices(ctx.db, destinations));
    expect(facts.devices).toHaveLength(4);
    expect(facts.policies).toEqual(await readSendPolicies(ctx.db, pairs, policyAccounts));
    expect(facts.policies.relationships.size).toBe(2);

    expect(
      await readSendFacts(ctx.db, { senders: [], destinations: [], pairs: [], policyAccounts: [] }),
    ).toEqual({ senders: [], devices: [], policies: { relationships: new Map(), accounts: new Map() } });
  });

  test("listQueueDevices returns every device of the accounts in key order, with app and queue sequence", async () => {
    const a = await createAccount(ctx.db, { registrationId: 11 });
    const b = await createAccount(ctx.db, { app: APP_MESSENGER, handle: "123456", registrationId: 22 });
    const a2 = await linkDevice(ctx.db, a.accountId);
    await commit(batchOf([oneToOne(b, "m1", [a]), oneToOne(b, "m2", [a, a2])]));

    const devices = await listQueueDevices(ctx.db, [b.accountId, a.accountId, randomUUID()]);
    const expected = [
      { accountId: a.accountId, deviceId: 1, registrationId: 11, app: APP_WHATSAPP, queueSeq: 2 },
      {
        accountId: a.accountId,
        deviceId: a2.deviceId,
        registrationId: a2.registrationId,
        app: APP_WHATSAPP,
        queueSeq: 1,
      },
      { accountId: b.accountId, deviceId: 1, registrationId: 22, app: APP_MESSENGER, queueSeq: 0 },
    ].sort((x, y) =>
      x.accountId < y.accountId ? -1 : x.accountId > y.accountId ? 1 : x.deviceId - y.deviceId,
    );
    expect(devices).toEqual(expected);
    expect(await listQueueDevices(ctx.db, [])).toEqual([]);
  });

  test("listMembersOfGroups maps each known group to its member ids in order", async () => {
    const [a, b, c] = await Promise.all([
      createAccount(ctx.db),
      createAccount(ctx.db),
      createAccount(ctx.db),
    ]);
    const members = (...ds: DeviceRef[]) => ds.map((d) => ({ accountId: d.accountId, app: APP_WHATSAPP }));
    const g1 = randomUUID();
    const g2 = randomUUID();
    await insertGroup(ctx.db, {
      id: g1,
      creatorAccountId: c.accountId,
      app: APP_WHATSAPP,
      members: members(c, a, b),
    });
    await insertGroup(ctx.db, {
      id: g2,
      creatorAccountId: a.accountId,
      app: APP_WHATSAPP,
      members: members(a),
    });
    await insertGroup(ctx.db, {
      id: randomUUID(),
      creatorAccountId: b.accountId,
      app: APP_WHATSAPP,
      members: members(b),
    });

    const found = await listMembersOfGroups(ctx.db, [g2, g1, randomUUID()]);
    expect(found).toEqual(
      new Map([
        [g1, [a.accountId, b.accountId, c.accountId].sort()],
        [g2, [a.accountId]],
      ]),
    );
    expect(await listMembersOfGroups(ctx.db, [])).toEqual(new Map());
  });

  describe("commitQueueBatch", () => {
    test("numbers each device's rows in array order, continuing from its queue_seq", async () => {
      const sender = await createAccount(ctx.db);
      const a = await createAccount(ctx.db);
      const a2 = await linkDevice(ctx.db, a.accountId);
      const b = await createAccount(ctx.db);
      // b's earlier messages were acknowledged: its sequence goes on from queue_seq, not from its rows.
      await sql`UPDATE devices SET queue_seq = 41 WHERE account_id = ${b.accountId}`.execute(ctx.db);

      const s1 = oneToOne(sender, "1", [a, a2]);
      const s2 = oneToOne(sender, "2", [a, a2, b]);
      const s3 = oneToOne(sender, "3", [a]);
      const first = await commit(batchOf([s1, s2, s3]));
      expect([...s1.rows, ...s2.rows, ...s3.rows].map((r) => seqOf(first, r))).toEqual([1, 1, 2, 2, 42, 3]);
      expect(first.logged).toEqual(new Set([s1.messageId, s2.messageId, s3.messageId]));
      expect(first.queued.size).toBe(6);

      const s4 = oneToOne(sender, "4", [a2]);
      const s5 = oneToOne(sender, "5", [a, b]);
      const second = await commit(batchOf([s4, s5]));
      expect([...s4.rows, ...s5.rows].map((r) => seqOf(second, r))).toEqual([3, 4, 43]);

      expect((await read(a)).map((m) => [m.seq, m.message_id])).toEqual([
        [1, s1.messageId],
        [2, s2.messageId],
        [3, s3.messageId],
        [4, s5.messageId],
      ]);
      expect((await read(a2)).map((m) => m.seq)).toEqual([1, 2, 3]);
      expect(
        (await listQueueDevices(ctx.db, [a.accountId, b.accountId])).map((d) => d.queueSeq).sort(),
      ).toEqual([3, 4, 43].sort());
    });

    test("commits an empty batch as a no-op", async () => {
      expect(await commit({ sendLog: [], rows: [], logged: [], payloads: [] })).toEqual({
        logged: new Set(),
        queued: new Map(),
      });
    });

    test("stores each row's content byte for byte: binary, empty, large and null", async () => {
      const b = await createAccount(ctx.db);
      const binary = new Uint8Array(Array.from({ length: 256 }, (_, i) => i));
      const large = new Uint8Array(70_000).map((_, i) => (i * 7) % 251);
      const contents = [binary, new Uint8Array(0), large, null, new Uint8Array([0x5c, 0x22, 0x27, 0])];
      const rows = contents.map((content) => queueRow(b, { type: 5, content }));
      await commit(batchOf([], rows));
      const stored = await read(b);
      expect(stored.map((m) => m.message_id)).toEqual(rows.map((r) => r.message_id));
      expect(stored.map((m) => (m.content === null ? null : plain(m.content)))).toEqual(contents);
    });

    test("queues rows with logged=false (delivery receipts) without idempotency entries", async () => {
      const a = await createAccount(ctx.db);
      const b = await createAccount(ctx.db);
      const send = oneToOne(a, "hello", [b]);
      const receipt = queueRow(a, {
        type: 5,
        source_account_id: b.accountId,
        source_device_id: 1,
        client_message_id: "hello",
      });
      const result = await commit(batchOf([send], [receipt]));
      expect(result.logged).toEqual(new Set([send.messageId]));
      expect(seqOf(result, receipt)).toBe(1);
      expect((await read(a)).map((m) => m.message_id)).toEqual([receipt.message_id]);

      const onlyReceipt = queueRow(a, { type: 5 });
      const second = await commit(batchOf([], [onlyReceipt]));
      expect(second.logged).toEqual(new Set());
      expect(seqOf(second, onlyReceipt)).toBe(2);
      expect(await count("send_log")).toBe(1);
      expect(
        await findSendLog(ctx.db, [
          { senderAccountId: b.accountId, senderDeviceId: 1, clientMessageId: "hello" },
        ]),
      ).toEqual(new Map());
    });

    test("leaves out a send whose idempotency key is already logged: no rows, no payload, not logged", async () => {
      const sender = await createAccount(ctx.db);
      const b = await createAccount(ctx.db);
      const c = await createAccount(ctx.db);
      const original = oneToOne(sender, "retried", [b]);
      await commit(batchOf([original]));

      // A retry of "retried" (new message id, as another instance would mint) racing the original.
      const retry = groupSend(sender, "retried", [b, c], new Uint8Array([1]));
      const fresh = oneToOne(sender, "fresh", [b]);
      const receipt = queueRow(c, { type: 5 });
      const result = await commit(batchOf([retry, fresh], [receipt], [retry.payload]));

      expect(result.logged).toEqual(new Set([fresh.messageId]));
      expect([...result.queued.keys()].sort()).toEqual(
        [queuedKey(fresh.rows[0]!), queuedKey(receipt)].sort(),
      );
      expect((await read(b)).map((m) => m.message_id)).toEqual([original.messageId, fresh.messageId]);
      expect((await read(c)).map((m) => m.message_id)).toEqual([receipt.message_id]);
      expect(await count("group_payloads")).toBe(0);
      expect(
        await findSendLog(ctx.db, [
          { senderAccountId: sender.accountId, senderDeviceId: 1, clientMessageId: "retried" },
        ]),
      ).toEqual(
        new Map([
          [
            sendLogKey(sender.accountId, 1, "retried"),
            { messageId: original.messageId, serverTimestampMs: SERVER_TS },
          ],
        ]),
      );
      // The left-out rows' sequence numbers are not handed out: each device's sequence skips them
      // (readers read `seq > cursor`, so a gap costs a read, never a message).
      expect(seqOf(result, fresh.rows[0]!)).toBe(3);
      expect(seqOf(result, receipt)).toBe(2);
    });

    test("skips rows for a device that does not exist and still logs the send", async () => {
      const sender = await createAccount(ctx.db);
      const b = await createAccount(ctx.db);
      const gone = { accountId: b.accountId, deviceId: 7 };
      const noAccount = { accountId: randomUUID(), deviceId: 1 };
      const send = oneToOne(sender, "m", [gone, b, noAccount]);
      const result = await commit(batchOf([send]));
      expect(result.logged).toEqual(new Set([send.messageId]));
      expect([...result.queued.keys()]).toEqual([queuedKey(send.rows[1]!)]);
      expect(seqOf(result, send.rows[1]!)).toBe(1);
      expect(await count("queued_messages")).toBe(1);
      expect(await listQueueDevices(ctx.db, [b.accountId, noAccount.accountId])).toEqual([
        {
          accountId: b.accountId,
          deviceId: 1,
          registrationId: b.registrationId,
          app: APP_WHATSAPP,
          queueSeq: 1,
        },
      ]);
    });

    test("stores a group payload once, and only for a logged send", async () => {
      const sender = await createAccount(ctx.db);
      const b = await createAccount(ctx.db);
      const b2 = await linkDevice(ctx.db, b.accountId);
      const c = await createAccount(ctx.db);
      const group = groupSend(sender, "g", [b, b2, c], new Uint8Array([4, 2]));
      const stray = { messageId: randomUUID(), app: APP_WHATSAPP, content: new Uint8Array([9]) };
      const result = await commit(batchOf([group], [], [group.payload, stray]));
      expect(result.logged).toEqual(new Set([group.messageId]));

      const { rows } = await sql<{ message_id: string }>`SELECT message_id FROM group_payloads`.execute(
        ctx.db,
      );
      expect(rows).toEqual([{ message_id: group.messageId }]);
      for (const d of [b, b2, c]) {
        const [m, ...more] = await read(d);
        expect(more).toEqual([]);
        expect(m).toMatchObject({ message_id: group.messageId, group_id: group.rows[0]?.group_id });
        expect(plain(m?.content)).toEqual(new Uint8Array([4, 2]));
      }
      const { rows: stored } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM queued_messages WHERE content IS NULL AND payload_id = ${group.messageId}
      `.execute(ctx.db);
      expect(stored[0]?.n).toBe(3);
    });

    test("takes each row's app from its destination device", async () => {
      const sender = await createAccount(ctx.db);
      const wa = await createAccount(ctx.db, { app: APP_WHATSAPP });
      const ms = await createAccount(ctx.db, { app: APP_MESSENGER, handle: "777" });
      // The rows say APP_WHATSAPP (queueRow's default); the destination devices decide.
      const send = oneToOne(sender, "m", [wa, ms]);
      const result = await commit(batchOf([send]));
      expect(send.rows.map((r) => result.queued.get(queuedKey(r))?.app)).toEqual([
        APP_WHATSAPP,
        APP_MESSENGER,
      ]);
      expect((await read(ms)).map((m) => [m.app, m.source_app])).toEqual([[APP_MESSENGER, APP_WHATSAPP]]);
      expect((await read(wa)).map((m) => m.app)).toEqual([APP_WHATSAPP]);
    });

    test("concurrent batches to overlapping devices, listed in different orders, commit gap-free sequences", async () => {
      const sender = await createAccount(ctx.db);
      const devices: DeviceRef[] = [];
      for (let i = 0; i < 3; i++) {
        const d = await createAccount(ctx.db);
        devices.push(d, await linkDevice(ctx.db, d.accountId));
      }
      const ROUNDS = 3;
      const BATCHES = 8;
      const SENDS_PER_DEVICE = 3;
      const expected = new Map<string, number>();
      for (let round = 0; round < ROUNDS; round++) {
        // Batch i sends to 4 of the 6 devices, rotated by i and reversed for odd i, so concurrent
        // batches name shared devices in opposite orders (locking in array order would deadlock).
        const batches = Array.from({ length: BATCHES }, (_, i) => {
          const targets = [...devices.slice(i % 6), ...devices.slice(0, i % 6)].slice(0, 4);
          if (i % 2 === 1) targets.reverse();
          const sends: Send[] = [];
          for (let k = 0; k < SENDS_PER_DEVICE; k++) {
            for (const t of targets)
              sends.push(oneToOne(sender, `r${round}-b${i}-k${k}-${t.accountId}/${t.deviceId}`, [t]));
          }
          for (const t of targets) {
            const k = `${t.accountId}/${t.deviceId}`;
            expected.set(k, (expected.get(k) ?? 0) + SENDS_PER_DEVICE);
          }
          return { targets, sends, batch: batchOf(sends) };
        });
        const outcomes = await Promise.allSettled(batches.map((b) => commit(b.batch)));
        // On PostgreSQL a deadlock would reject with 40P01 (the send path retries it); devices are
        // locked in key order, so none occurs here. PGlite runs the statements one at a time.
        expect(failures(outcomes)).toEqual([]);

        outcomes.forEach((o, i) => {
          if (o.status !== "fulfilled") return;
          const { sends, targets } = batches[i]!;
          expect(o.value.logged.size).toBe(sends.length);
          // Within one batch a device's rows get consecutive numbers, in array order.
          for (const t of targets) {
            const seqs = sends
              .flatMap((s) => s.rows)
              .filter((r) => r.account_id === t.accountId && r.device_id === t.deviceId)
              .map((r) => seqOf(o.value, r));
            const first = seqs[0] ?? 0;
            expect(seqs).toEqual(seqs.map((_, n) => first + n));
          }
        });
      }

      const listed = await listQueueDevices(
        ctx.db,
        devices.map((d) => d.accountId),
      );
      for (const d of devices) {
        const n = expected.get(`${d.accountId}/${d.deviceId}`) ?? 0;
        const seqs = (await read(d)).map((m) => m.seq);
        expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        expect(listed.find((x) => x.accountId === d.accountId && x.deviceId === d.deviceId)?.queueSeq).toBe(
          n,
        );
      }
      expect(await count("queued_messages")).toBe(ROUNDS * BATCHES * 4 * SENDS_PER_DEVICE);
    });

    test("concurrent batches claiming one idempotency key queue its rows exactly once", async () => {
      const sender = await createAccount(ctx.db);
      const b = await createAccount(ctx.db);
      const c = await createAccount(ctx.db);
      const attempts = Array.from({ length: 8 }, (_, i) => oneToOne(sender, "same", i % 2 ? [b, c] : [c, b]));
      const outcomes = await Promise.allSettled(attempts.map((s) => commit(batchOf([s]))));
      expect(failures(outcomes)).toEqual([]);
      const winners = attempts.filter((s, i) => {
        const o = outcomes[i];
        return o?.status === "fulfilled" && o.value.logged.has(s.messageId);
      });
      expect(winners).toHaveLength(1);
      for (const d of [b, c])
        expect((await read(d)).map((m) => m.message_id)).toEqual([winners[0]?.messageId]);
      expect(await count("send_log")).toBe(1);
    });
  });
});
