import { randomUUID } from "node:crypto";
import { AppError, Code, isAppError } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import { EnvelopeType, type App } from "@switchboard/proto";
import {
  countQueued,
  findSendLog,
  insertGroupPayloads,
  insertSendLog,
  isRetryableTransactionError,
  isUnavailableError,
  lockDevicesOfAccounts,
  queueMessages,
  sendLogKey,
  type Database,
  type LockedDevice,
  type QueueInsert,
} from "@switchboard/storage";
import { sql, type Kysely, type Transaction } from "kysely";
import type { Logger } from "pino";
import { checkDeviceList, type DeviceRegistration } from "../domain/device-list.js";
import { packFlags, queuedMessageToEnvelope } from "../domain/envelope.js";
import type { Metrics } from "../metrics.js";
import { encodeMessageEvent } from "./events.js";

/** The sending device with its account's app. */
export interface Sender {
  accountId: string;
  deviceId: number;
  app: App;
  providerId: string;
}

interface SendCommon {
  sender: Sender;
  clientMessageId: string;
  clientTimestampMs: number;
  urgent: boolean;
  forwarded: boolean;
  reportTag: Uint8Array | null;
}

/** A validated one-to-one send. */
export interface DirectSend extends SendCommon {
  kind: "direct";
  destinationAccountId: string;
  messages: ReadonlyArray<{
    deviceId: number;
    registrationId: number;
    type: EnvelopeType;
    content: Uint8Array;
  }>;
}

/** A validated group send. */
export interface GroupSend extends SendCommon {
  kind: "group";
  groupId: string;
  content: Uint8Array;
  expected: ReadonlyArray<{ accountId: string; devices: readonly DeviceRegistration[] }> | undefined;
}

/**
 * A server delivery receipt for `row.account_id`/`row.device_id`: queued like a message, without
 * device-list, idempotency or queue-limit checks (the ack that caused it already happened).
 */
export interface ReceiptSend {
  kind: "receipt";
  row: QueueInsert;
}

/** The outcome of a send: stored, or an expected reason it was not (nothing stored then). */
export type SendOutcome =
  | { kind: "sent"; messageId: string; serverTimestampMs: number; duplicate: boolean }
  | { kind: "mismatched"; accountId: string; missing: number[]; extra: number[] }
  | { kind: "stale"; accountId: string; stale: number[] }
  | { kind: "recipient_not_found" }
  | {
      kind: "group_mismatched";
      mismatched: Array<{ accountId: string; missing: number[]; extra: number[] }>;
      stale: Array<{ accountId: string; stale: number[] }>;
    }
  | { kind: "not_a_member" };

type AnySend = DirectSend | GroupSend | ReceiptSend;

interface Pending {
  send: AnySend;
  enqueuedAt: number;
  resolve: (o: SendOutcome) => void;
  reject: (e: unknown) => void;
}

type ItemResult = { outcome: SendOutcome } | { error: AppError };

/** Options of {@link createSendPipeline}. */
export interface SendPipelineOptions {
  db: Kysely<Database>;
  fanout: Fanout;
  log: Logger;
  metrics: Metrics;
  lanes: number;
  batchMax: number;
  queueTtlMs: number;
  maxQueueLength: number;
}

/** The group-commit send path. */
export interface SendPipeline {
  /** Queues a send; resolves once its rows are committed (or with an expected outcome). */
  submit(send: DirectSend | GroupSend): Promise<SendOutcome>;
  /** Queues delivery receipts (best effort: failures are logged, not returned). */
  submitReceipts(rows: readonly QueueInsert[]): void;
  /** Stops taking sends and waits until every accepted one has finished. */
  close(): Promise<void>;
}

const MAX_TX_ATTEMPTS = 4;

function laneOf(key: string, lanes: number): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (h >>> 0) % lanes;
}

/**
 * Creates the send pipeline: sends are spread over `lanes` by destination (recipient account or
 * group), and each lane commits whatever has queued up while its previous transaction ran, up to
 * `batchMax` sends per transaction (group commit). Within a lane, sends commit in submission
 * order, so sends to one recipient keep their order. A sender hears `sent` only after COMMIT;
 * only then are wake-ups published. Deadlocks and serialization failures retry the batch;
 * PostgreSQL being unreachable fails the batch with UNAVAILABLE (never a false success).
 */
export function createSendPipeline(opts: SendPipelineOptions): SendPipeline {
  const lanes: Array<{ queue: Pending[]; running: boolean }> = Array.from({ length: opts.lanes }, () => ({
    queue: [],
    running: false,
  }));
  let closing = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;

  function kick(lane: { queue: Pending[]; running: boolean }) {
    if (lane.running || lane.queue.length === 0) return;
    lane.running = true;
    const batch = lane.queue.splice(0, opts.batchMax);
    void runBatch(batch).finally(() => {
      lane.running = false;
      inFlight -= batch.length;
      if (inFlight === 0 && idle) idle();
      kick(lane);
    });
  }

  async function runBatch(batch: Pending[]): Promise<void> {
    const started = performance.now();
    opts.metrics.commitBatchSize.observe(batch.length);
    let committed:
      | { results: ItemResult[]; events: Uint8Array[]; keys: Array<{ accountId: string; deviceId: number }> }
      | undefined;
    for (let attempt = 1; !committed; attempt++) {
      try {
        const serverTimestampMs = Date.now();
        committed = await opts.db.transaction().execute((trx) => commitBatch(trx, batch, serverTimestampMs));
      } catch (err) {
        if (attempt < MAX_TX_ATTEMPTS && isRetryableTransactionError(err)) continue;
        const error = isUnavailableError(err)
          ? new AppError(
              Code.Unavailable,
              "DATABASE_UNAVAILABLE",
              "message store unavailable; retry with the same client_message_id",
              {
                cause: err,
                retryAfterMs: 1000,
              },
            )
          : isAppError(err)
            ? err
            : new AppError(Code.Internal, "INTERNAL", "internal error", { cause: err });
        if (error.code === Code.Internal) opts.log.error({ err, batch: batch.length }, "send batch failed");
        else opts.log.warn({ err, batch: batch.length }, "send batch failed");
        for (const p of batch) {
          opts.metrics.sends.inc({ kind: p.send.kind, outcome: "error" });
          p.reject(error);
        }
        return;
      }
    }
    const { results, events: published, keys } = committed;
    const commitDone = performance.now();
    for (const [i, p] of batch.entries()) {
      const r = results[i];
      opts.metrics.commitSeconds.observe((commitDone - p.enqueuedAt) / 1000);
      if (!r) p.reject(new AppError(Code.Internal, "INTERNAL", "internal error"));
      else if ("error" in r) {
        opts.metrics.sends.inc({ kind: p.send.kind, outcome: "error" });
        p.reject(r.error);
      } else {
        const o = r.outcome;
        opts.metrics.sends.inc({
          kind: p.send.kind,
          outcome: o.kind === "sent" && o.duplicate ? "duplicate" : o.kind,
        });
        p.resolve(o);
      }
    }
    if (published.length > 0) {
      try {
        await opts.fanout.publish(
          published.map((payload, i) => ({
            key: keys[i] as { accountId: string; deviceId: number },
            payload,
          })),
        );
      } catch (err) {
        // Committed messages stay queued; streams find them on their next read (resync or poll).
        opts.log.warn({ err, events: published.length }, "wake-up publish failed");
      }
    }
    opts.log.debug(
      { batch: batch.length, rows: published.length, ms: Math.round(commitDone - started) },
      "send batch committed",
    );
  }

  async function commitBatch(trx: Transaction<Database>, all: Pending[], serverTimestampMs: number) {
    const results: Array<ItemResult | undefined> = new Array<ItemResult | undefined>(all.length);
    // Receipts ride along in the same transaction; user sends are checked below.
    const receipts = all.flatMap((p, i) =>
      p.send.kind === "receipt" ? [{ row: p.send.row, index: i }] : [],
    );
    const batch = all.map((p) =>
      p.send.kind === "receipt" ? undefined : (p as Pending & { send: DirectSend | GroupSend }),
    );
    const sends = batch.flatMap((p) => (p ? [p] : []));

    // Group members, read under the transaction.
    const groupIds = [...new Set(sends.flatMap((p) => (p.send.kind === "group" ? [p.send.groupId] : [])))];
    const members = new Map<string, string[]>();
    if (groupIds.length > 0) {
      const rows = await sql<{ group_id: string; account_id: string }>`
        SELECT group_id, account_id FROM group_members WHERE group_id = ANY(${groupIds}::uuid[]) ORDER BY account_id
      `.execute(trx);
      for (const r of rows.rows) {
        const list = members.get(r.group_id) ?? [];
        list.push(r.account_id);
        members.set(r.group_id, list);
      }
    }

    // Sending devices must still exist (a removed device loses access at once).
    const senderRows = await sql<{ account_id: string; device_id: number; registration_id: number }>`
      SELECT d.account_id, d.device_id, d.registration_id FROM devices d
      JOIN unnest(${sends.map((p) => p.send.sender.accountId)}::uuid[], ${sends.map((p) => p.send.sender.deviceId)}::int[]) AS k(a, dv)
        ON d.account_id = k.a AND d.device_id = k.dv
    `.execute(trx);
    const senderReg = new Map(
      senderRows.rows.map((r) => [`${r.account_id}/${r.device_id}`, r.registration_id]),
    );

    // Earlier sends with the same idempotency key answer retries without storing anything.
    const prior = await findSendLog(
      trx,
      sends.map((p) => ({
        senderAccountId: p.send.sender.accountId,
        senderDeviceId: p.send.sender.deviceId,
        clientMessageId: p.send.clientMessageId,
      })),
    );

    // Lock every destination device, in key order; this orders queue sequences by commit.
    const destAccounts = new Set<string>(receipts.map((r) => r.row.account_id));
    for (const p of sends) {
      if (p.send.kind === "direct") destAccounts.add(p.send.destinationAccountId);
      else for (const a of members.get(p.send.groupId) ?? []) destAccounts.add(a);
    }
    const locked = await lockDevicesOfAccounts(trx, [...destAccounts]);
    const devicesOf = new Map<string, LockedDevice[]>();
    for (const d of locked) {
      const list = devicesOf.get(d.accountId) ?? [];
      list.push(d);
      devicesOf.set(d.accountId, list);
    }
    const pendingPerDevice = new Map<string, number>();
    // A device's sequence bounds its queue length; count exactly only where the bound may be hit.
    const nearFull = locked.filter((d) => d.queueSeq + all.length >= opts.maxQueueLength);
    const queued = await countQueued(trx, nearFull);
    const queueLength = (d: LockedDevice) => queued.get(`${d.accountId}/${d.deviceId}`) ?? 0;

    const firstByKey = new Map<string, number>();
    const accepted: Array<{
      index: number;
      messageId: string;
      targets: Array<{ device: LockedDevice; type: EnvelopeType; content: Uint8Array | null }>;
    }> = [];

    for (const [index, p] of batch.entries()) {
      if (!p) continue;
      const s = p.send;
      const key = sendLogKey(s.sender.accountId, s.sender.deviceId, s.clientMessageId);
      const earlier = prior.get(key);
      if (earlier) {
        results[index] = {
          outcome: {
            kind: "sent",
            messageId: earlier.messageId,
            serverTimestampMs: earlier.serverTimestampMs,
            duplicate: true,
          },
        };
        continue;
      }
      if (firstByKey.has(key)) continue; // answered from the first occurrence below
      const registrationId = senderReg.get(`${s.sender.accountId}/${s.sender.deviceId}`);
      if (registrationId === undefined) {
        results[index] = {
          error: new AppError(Code.Unauthenticated, "DEVICE_REMOVED", "the sending device no longer exists"),
        };
        continue;
      }
      const targets: Array<{ device: LockedDevice; type: EnvelopeType; content: Uint8Array | null }> = [];
      if (s.kind === "direct") {
        const current = devicesOf.get(s.destinationAccountId);
        if (!current || current.length === 0) {
          results[index] = { outcome: { kind: "recipient_not_found" } };
          continue;
        }
        const self = s.destinationAccountId === s.sender.accountId ? s.sender.deviceId : undefined;
        const check = checkDeviceList(current, s.messages, self);
        if (check.kind === "mismatched") {
          results[index] = {
            outcome: {
              kind: "mismatched",
              accountId: s.destinationAccountId,
              missing: check.missing,
              extra: check.extra,
            },
          };
          continue;
        }
        if (check.kind === "stale") {
          results[index] = {
            outcome: { kind: "stale", accountId: s.destinationAccountId, stale: check.stale },
          };
          continue;
        }
        const byId = new Map(current.map((d) => [d.deviceId, d]));
        for (const m of s.messages) {
          const device = byId.get(m.deviceId);
          if (device) targets.push({ device, type: m.type, content: m.content });
        }
      } else {
        const memberIds = members.get(s.groupId) ?? [];
        if (!memberIds.includes(s.sender.accountId)) {
          results[index] = { outcome: { kind: "not_a_member" } };
          continue;
        }
        if (s.expected) {
          const expected = new Map(s.expected.map((e) => [e.accountId, e.devices]));
          const mismatched: Array<{ accountId: string; missing: number[]; extra: number[] }> = [];
          const stale: Array<{ accountId: string; stale: number[] }> = [];
          for (const accountId of new Set([...memberIds, ...expected.keys()])) {
            const current = memberIds.includes(accountId) ? (devicesOf.get(accountId) ?? []) : [];
            const self = accountId === s.sender.accountId ? s.sender.deviceId : undefined;
            const check = checkDeviceList(current, expected.get(accountId) ?? [], self);
            if (check.kind === "mismatched")
              mismatched.push({ accountId, missing: check.missing, extra: check.extra });
            else if (check.kind === "stale") stale.push({ accountId, stale: check.stale });
          }
          if (mismatched.length > 0 || stale.length > 0) {
            results[index] = { outcome: { kind: "group_mismatched", mismatched, stale } };
            continue;
          }
        }
        for (const accountId of memberIds) {
          for (const device of devicesOf.get(accountId) ?? []) {
            if (accountId === s.sender.accountId && device.deviceId === s.sender.deviceId) continue;
            targets.push({ device, type: EnvelopeType.SENDER_KEY_MESSAGE, content: null });
          }
        }
      }
      const full = targets.find((t) => {
        const k = `${t.device.accountId}/${t.device.deviceId}`;
        return queueLength(t.device) + (pendingPerDevice.get(k) ?? 0) >= opts.maxQueueLength;
      });
      if (full) {
        results[index] = {
          error: new AppError(
            Code.ResourceExhausted,
            "RECIPIENT_QUEUE_FULL",
            "a recipient device's queue is full; retry later",
            {
              retryAfterMs: 60_000,
            },
          ),
        };
        continue;
      }
      for (const t of targets) {
        const k = `${t.device.accountId}/${t.device.deviceId}`;
        pendingPerDevice.set(k, (pendingPerDevice.get(k) ?? 0) + 1);
      }
      firstByKey.set(key, index);
      accepted.push({ index, messageId: randomUUID(), targets });
    }

    // Claim idempotency keys; a key another transaction committed meanwhile makes this a retry.
    const inserted = await insertSendLog(
      trx,
      accepted.map((a) => {
        const s = (batch[a.index] as Pending & { send: DirectSend | GroupSend }).send;
        return {
          senderAccountId: s.sender.accountId,
          senderDeviceId: s.sender.deviceId,
          clientMessageId: s.clientMessageId,
          app: s.sender.app,
          messageId: a.messageId,
          serverTimestampMs,
        };
      }),
    );
    const raced = accepted.filter((a) => {
      const s = (batch[a.index] as Pending & { send: DirectSend | GroupSend }).send;
      return !inserted.has(sendLogKey(s.sender.accountId, s.sender.deviceId, s.clientMessageId));
    });
    if (raced.length > 0) {
      const found = await findSendLog(
        trx,
        raced.map((a) => {
          const s = (batch[a.index] as Pending & { send: DirectSend | GroupSend }).send;
          return {
            senderAccountId: s.sender.accountId,
            senderDeviceId: s.sender.deviceId,
            clientMessageId: s.clientMessageId,
          };
        }),
      );
      for (const a of raced) {
        const s = (batch[a.index] as Pending & { send: DirectSend | GroupSend }).send;
        const f = found.get(sendLogKey(s.sender.accountId, s.sender.deviceId, s.clientMessageId));
        results[a.index] = f
          ? {
              outcome: {
                kind: "sent",
                messageId: f.messageId,
                serverTimestampMs: f.serverTimestampMs,
                duplicate: true,
              },
            }
          : {
              error: new AppError(
                Code.Aborted,
                "CONCURRENT_SEND",
                "a concurrent send with this client_message_id failed; retry",
              ),
            };
      }
    }
    const racedSet = new Set(raced);
    const rows: QueueInsert[] = [];
    const payloads: Array<{ messageId: string; app: number; content: Uint8Array }> = [];
    const groupContent = new Map<string, Uint8Array>();
    for (const a of accepted) {
      if (racedSet.has(a)) continue;
      const s = (batch[a.index] as Pending & { send: DirectSend | GroupSend }).send;
      const registrationId = senderReg.get(`${s.sender.accountId}/${s.sender.deviceId}`) ?? 0;
      if (s.kind === "group") {
        payloads.push({ messageId: a.messageId, app: s.sender.app, content: s.content });
        groupContent.set(a.messageId, s.content);
      }
      for (const t of a.targets) {
        rows.push({
          account_id: t.device.accountId,
          device_id: t.device.deviceId,
          message_id: a.messageId,
          app: t.device.app,
          type: t.type,
          source_account_id: s.sender.accountId,
          source_device_id: s.sender.deviceId,
          source_app: s.sender.app,
          source_provider_id: s.sender.providerId,
          source_registration_id: registrationId,
          client_message_id: s.clientMessageId,
          client_timestamp_ms: s.clientTimestampMs,
          server_timestamp_ms: serverTimestampMs,
          expires_at_ms: serverTimestampMs + opts.queueTtlMs,
          flags: packFlags(s.urgent, s.forwarded),
          group_id: s.kind === "group" ? s.groupId : null,
          report_tag: s.reportTag,
          content: t.content,
          payload_id: s.kind === "group" ? a.messageId : null,
        });
      }
      results[a.index] = {
        outcome: { kind: "sent", messageId: a.messageId, serverTimestampMs, duplicate: false },
      };
    }
    const lockedByKey = new Map(locked.map((d) => [`${d.accountId}/${d.deviceId}`, d]));
    for (const r of receipts) {
      // The receipt's target device may have been removed since its message was sent.
      const target = lockedByKey.get(`${r.row.account_id}/${r.row.device_id}`);
      if (target) rows.push({ ...r.row, app: target.app });
      results[r.index] = {
        outcome: { kind: "sent", messageId: r.row.message_id, serverTimestampMs, duplicate: false },
      };
    }
    await insertGroupPayloads(trx, payloads);
    const seqs = await queueMessages(trx, rows);

    // Later occurrences of a key within this batch answer like the first one.
    for (const [index, p] of batch.entries()) {
      if (results[index] || !p) continue;
      const s = p.send;
      const first = firstByKey.get(sendLogKey(s.sender.accountId, s.sender.deviceId, s.clientMessageId));
      const r = first === undefined ? undefined : results[first];
      results[index] =
        r && "outcome" in r && r.outcome.kind === "sent"
          ? { outcome: { ...r.outcome, duplicate: true } }
          : (r ?? { error: new AppError(Code.Internal, "INTERNAL", "internal error") });
    }

    const events: Uint8Array[] = [];
    const keys: Array<{ accountId: string; deviceId: number }> = [];
    for (const [i, row] of rows.entries()) {
      const envelope = queuedMessageToEnvelope({
        ...row,
        seq: seqs[i] as number,
        content: row.content ?? (row.payload_id ? (groupContent.get(row.payload_id) ?? null) : null),
      });
      events.push(encodeMessageEvent(envelope));
      keys.push({ accountId: row.account_id, deviceId: row.device_id });
      opts.metrics.queued.inc({ source_app: String(row.source_app), destination_app: String(row.app) });
    }
    return { results: results as ItemResult[], events, keys };
  }

  function enqueue(send: AnySend): Promise<SendOutcome> {
    return new Promise<SendOutcome>((resolve, reject) => {
      const key =
        send.kind === "direct"
          ? send.destinationAccountId
          : send.kind === "group"
            ? send.groupId
            : send.row.account_id;
      const lane = lanes[laneOf(key, lanes.length)] as { queue: Pending[]; running: boolean };
      inFlight += 1;
      lane.queue.push({ send, enqueuedAt: performance.now(), resolve, reject });
      kick(lane);
    });
  }

  return {
    submit(send) {
      if (closing) {
        return Promise.reject(
          new AppError(Code.Unavailable, "SHUTTING_DOWN", "this instance is shutting down; retry on another"),
        );
      }
      return enqueue(send);
    },
    submitReceipts(rows) {
      for (const row of rows) {
        enqueue({ kind: "receipt", row }).catch((err: unknown) =>
          opts.log.warn({ err }, "delivery receipt not queued"),
        );
      }
    },
    async close() {
      closing = true;
      if (inFlight === 0) return;
      await new Promise<void>((resolve) => {
        idle = resolve;
      });
    },
  };
}
