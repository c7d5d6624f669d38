import { randomUUID } from "node:crypto";
import { AppError, Code, isAppError } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import { App, EnvelopeType } from "@switchboard/proto";
import {
  commitQueueBatch,
  findSendLog,
  insertAcceptedRelationships,
  QUEUE_FLAG_HELD,
  QUEUE_FLAG_REQUEST,
  queuedKey,
  readSendFacts,
  isRetryableTransactionError,
  isUnavailableError,
  listMembersOfGroups,
  relationshipKey,
  sendLogKey,
  type Database,
  type QueueDevice,
  type QueueInsert,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { RateLimiter } from "@switchboard/ratelimit";
import { checkDeviceList, type DeviceRegistration } from "../domain/device-list.js";
import { FLAG_NO_RECEIPT, packFlags } from "../domain/envelope.js";
import type { Franker } from "../domain/franking.js";
import { decideDirect, hasBlocked } from "../domain/relationship-policy.js";
import { loadInteropPolicy } from "../domain/interop-policy.js";
import type { Metrics } from "../metrics.js";
import { createQueueBounds } from "./queue-bounds.js";
import { encodeQueuedMessageEvent } from "./events.js";
import { checkLimits, type RateLimitPolicies } from "./rate-limits.js";

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
  /** No server delivery receipt when a recipient device acknowledges it. */
  noDeliveryReceipt: boolean;
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

type ItemResult = { outcome: SendOutcome } | { error: AppError; rateLimited?: boolean };

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
  /** Token buckets checked per send (sender device, and sender→recipient pair) before the commit. */
  limiter: RateLimiter;
  policies: RateLimitPolicies;
  /** Adds server franking tags to committed messages with a franking commitment (issue 9). */
  franker?: Franker;
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

/** A metric label for an app: `whatsapp`, `messenger`, `instagram`, `third_party`. */
const appLabel = (app: number): string => (App[app] ?? "unspecified").toLowerCase();

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
  /** Wake-up publishes still waiting for Redis (close() waits for them). */
  const publishes = new Set<Promise<void>>();
  const queueBounds = createQueueBounds();

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
    // Rate limits for the whole batch in one round trip, concurrent with the batch's reads (a send
    // denied meanwhile is left out of the commit); receipts are not limited.
    const limits = checkLimits(
      opts.limiter,
      opts.log,
      batch.map(({ send: s }) => {
        if (s.kind === "receipt") return [];
        const device = `${s.sender.accountId}.${s.sender.deviceId}`;
        const peer = s.kind === "direct" ? s.destinationAccountId : s.groupId;
        const buckets = [
          { policy: opts.policies.send, subject: device },
          { policy: opts.policies.pair, subject: `${device}>${peer}` },
        ];
        // Forwarding limit: each chat forwarded content goes to costs the sender account a token.
        if (s.forwarded) buckets.push({ policy: opts.policies.forward, subject: s.sender.accountId });
        return buckets;
      }),
    );
    const started = performance.now();
    opts.metrics.commitBatchSize.observe(batch.length);
    let committed:
      | { results: ItemResult[]; events: Uint8Array[]; keys: Array<{ accountId: string; deviceId: number }> }
      | undefined;
    for (let attempt = 1; !committed; attempt++) {
      try {
        const serverTimestampMs = Date.now();
        committed = await commitBatch(batch, serverTimestampMs, limits);
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
        opts.metrics.sends.inc({ kind: p.send.kind, outcome: r.rateLimited ? "rate_limited" : "error" });
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
      // Not awaited: the lane takes its next batch while Redis answers. The publish is written to
      // the one publisher connection now, in commit order, so one lane's wake-ups for a device
      // still arrive in sequence order (and a subscriber reads the queue on any gap anyway).
      const publishing = opts.fanout
        .publish(
          published.map((payload, i) => ({
            key: keys[i] as { accountId: string; deviceId: number },
            payload,
          })),
        )
        .catch((err: unknown) => {
          // Committed messages stay queued; streams find them on their next read (resync or poll).
          opts.log.warn({ err, events: published.length }, "wake-up publish failed");
        });
      publishes.add(publishing);
      void publishing.finally(() => publishes.delete(publishing));
    }
    opts.log.debug(
      { batch: batch.length, rows: published.length, ms: Math.round(commitDone - started) },
      "send batch committed",
    );
  }

  /**
   * Runs one batch: reads (senders and idempotency keys, destination devices; in parallel), checks
   * each send in memory, then writes everything in one statement. Returns per-item results and the
   * wake-up events to publish after the commit.
   */
  async function commitBatch(
    all: Pending[],
    serverTimestampMs: number,
    limits: Promise<ReadonlyArray<AppError | undefined>>,
  ) {
    const results: Array<ItemResult | undefined> = new Array<ItemResult | undefined>(all.length);
    // Receipts ride along in the same statement; user sends are checked below.
    const receipts = all.flatMap((p, i) =>
      p.send.kind === "receipt" ? [{ row: p.send.row, index: i }] : [],
    );
    const sends = all.flatMap((p, index) => (p.send.kind === "receipt" ? [] : [{ send: p.send, index }]));

    const groupIds = [...new Set(sends.flatMap((s) => (s.send.kind === "group" ? [s.send.groupId] : [])))];
    const members = await listMembersOfGroups(opts.db, groupIds);
    // Receipts need no device read: they skip device-list and queue-limit checks, and the commit
    // itself skips the rows of a device that no longer exists.
    const destAccounts = new Set<string>();
    for (const { send } of sends) {
      if (send.kind === "direct") destAccounts.add(send.destinationAccountId);
      else for (const a of members.get(send.groupId) ?? []) destAccounts.add(a);
    }
    // Message requests, blocks and minors: relationships of every (recipient, sender) pair and
    // the recipients' flags, in one read alongside the others.
    // Each pair once: a conversation's two directions, and repeated sends, share their probes.
    const policyPairs = new Map<string, { owner: string; peer: string }>();
    const addPair = (owner: string, peer: string) => {
      const k = relationshipKey(owner, peer);
      if (!policyPairs.has(k)) policyPairs.set(k, { owner, peer });
    };
    const policyAccounts = new Set<string>();
    for (const { send } of sends) {
      const from = send.sender.accountId;
      if (send.kind === "direct") {
        addPair(send.destinationAccountId, from);
        addPair(from, send.destinationAccountId);
        policyAccounts.add(from).add(send.destinationAccountId);
      } else {
        for (const a of members.get(send.groupId) ?? []) if (a !== from) addPair(a, from);
      }
    }
    // One statement for the batch's reads (senders and keys, destination devices, relationships),
    // alongside the rate-limit round trip to Redis.
    const [denied, { senders, devices, policies: facts }] = await Promise.all([
      limits,
      readSendFacts(opts.db, {
        senders: sends.map(({ send }) => ({
          accountId: send.sender.accountId,
          deviceId: send.sender.deviceId,
          clientMessageId: send.clientMessageId,
        })),
        destinations: [...destAccounts],
        pairs: [...policyPairs.values()],
        policyAccounts: [...policyAccounts],
      }),
    ]);
    // Accounts of our apps that did not opt in do not exist for third-party senders.
    const interop = await loadInteropPolicy(
      opts.db,
      sends.map(({ send }) => send),
      members,
    );
    const devicesOf = new Map<string, QueueDevice[]>();
    for (const d of devices) {
      const list = devicesOf.get(d.accountId) ?? [];
      list.push(d);
      devicesOf.set(d.accountId, list);
    }
    // Count exactly only where the queue limit may be hit (queue-bounds.ts).
    const queued = await queueBounds.nearLimit(opts.db, devices, all.length, opts.maxQueueLength);
    const queueLength = (d: QueueDevice) => queued.get(`${d.accountId}/${d.deviceId}`) ?? 0;
    const pendingPerDevice = new Map<string, number>();

    const firstByKey = new Map<string, number>();
    const accepted: Array<{
      index: number;
      send: DirectSend | GroupSend;
      messageId: string;
      registrationId: number;
      targets: Array<{ device: QueueDevice; type: EnvelopeType; content: Uint8Array | null }>;
      /** Extra `flags` bits: held and/or request (message requests). */
      requestFlags: number;
      newConversation: boolean;
      recordSenderRelationship: boolean;
    }> = [];

    for (const [i, { send: s, index }] of sends.entries()) {
      const limited = denied[index];
      if (limited) {
        results[index] = { error: limited, rateLimited: true };
        continue;
      }
      const key = sendLogKey(s.sender.accountId, s.sender.deviceId, s.clientMessageId);
      const checked = senders[i];
      if (checked?.earlier) {
        results[index] = { outcome: { kind: "sent", ...checked.earlier, duplicate: true } };
        continue;
      }
      if (firstByKey.has(key)) continue; // answered from the first occurrence below
      if (checked?.registrationId === undefined) {
        results[index] = {
          error: new AppError(Code.Unauthenticated, "DEVICE_REMOVED", "the sending device no longer exists"),
        };
        continue;
      }
      if (interop.revoked(s.sender)) {
        results[index] = {
          error: new AppError(
            Code.Unauthenticated,
            "CREDENTIALS_REVOKED",
            "the sender's provider was revoked",
          ),
        };
        continue;
      }
      const targets: Array<{ device: QueueDevice; type: EnvelopeType; content: Uint8Array | null }> = [];
      let requestFlags = 0;
      let newConversation = false;
      let recordSenderRelationship = false;
      if (s.kind === "direct") {
        const current = devicesOf.get(s.destinationAccountId);
        if (!current || current.length === 0 || interop.hides(s.sender, s.destinationAccountId)) {
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
        const decision = decideDirect(facts, s.sender.accountId, s.destinationAccountId);
        newConversation = decision.newConversation;
        recordSenderRelationship = decision.recordSenderRelationship;
        if (decision.action === "hold") requestFlags = QUEUE_FLAG_HELD | QUEUE_FLAG_REQUEST;
        else if (decision.action === "deliver_marked") requestFlags = QUEUE_FLAG_REQUEST;

        // A dropped send (blocked sender, adult to a minor) is answered like any other and
        // logged for idempotency, but nothing is queued.
        for (const m of decision.action === "drop" ? [] : s.messages) {
          const device = current.find((d) => d.deviceId === m.deviceId);
          if (device) targets.push({ device, type: m.type, content: m.content });
        }
      } else {
        const memberIds = (members.get(s.groupId) ?? []).filter((a) => !interop.hides(s.sender, a));
        if (!memberIds.includes(s.sender.accountId)) {
          results[index] = { outcome: { kind: "not_a_member" } };
          continue;
        }
        if (s.expected) {
          const expected = new Map(
            s.expected
              .filter((e) => !interop.hides(s.sender, e.accountId))
              .map((e) => [e.accountId, e.devices]),
          );
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
            if (hasBlocked(facts, accountId, s.sender.accountId)) continue;
            targets.push({ device, type: EnvelopeType.SENDER_KEY_MESSAGE, content: null });
          }
        }
      }
      const full = targets.some(
        (t) =>
          queueLength(t.device) + (pendingPerDevice.get(`${t.device.accountId}/${t.device.deviceId}`) ?? 0) >=
          opts.maxQueueLength,
      );
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
      accepted.push({
        index,
        send: s,
        messageId: randomUUID(),
        registrationId: checked.registrationId,
        targets,
        requestFlags,
        newConversation,
        recordSenderRelationship,
      });
    }

    // New-conversation limit: a sender's first message to an account with no relationship either
    // way takes a token (one limiter call, only for batches that start conversations).
    const starts = new Map<string, (typeof accepted)[number][]>();
    for (const a of accepted) {
      if (!a.newConversation || a.send.kind !== "direct") continue;
      const k = `${a.send.sender.accountId}>${a.send.destinationAccountId}`;
      starts.set(k, [...(starts.get(k) ?? []), a]);
    }
    if (starts.size > 0) {
      const denied = await checkLimits(
        opts.limiter,
        opts.log,
        [...starts.values()].map((list) => [
          {
            policy: opts.policies.newConversation,
            subject: (list[0] as (typeof accepted)[number]).send.sender.accountId,
          },
        ]),
      );
      const refused = new Set<(typeof accepted)[number]>();
      for (const [i, list] of [...starts.values()].entries()) {
        const error = denied[i];
        if (!error) continue;
        for (const a of list) {
          refused.add(a);
          results[a.index] = { error };
        }
      }
      if (refused.size > 0) accepted.splice(0, accepted.length, ...accepted.filter((a) => !refused.has(a)));
    }

    const rows: Array<Omit<QueueInsert, "app">> = [];
    const logged: boolean[] = [];
    const groupContent = new Map<string, Uint8Array>();
    for (const a of accepted) {
      const s = a.send;
      if (s.kind === "group") groupContent.set(a.messageId, s.content);
      for (const t of a.targets) {
        rows.push({
          account_id: t.device.accountId,
          device_id: t.device.deviceId,
          message_id: a.messageId,
          type: t.type,
          source_account_id: s.sender.accountId,
          source_device_id: s.sender.deviceId,
          source_app: s.sender.app,
          source_provider_id: s.sender.providerId,
          source_registration_id: a.registrationId,
          client_message_id: s.clientMessageId,
          client_timestamp_ms: s.clientTimestampMs,
          server_timestamp_ms: serverTimestampMs,
          expires_at_ms: serverTimestampMs + opts.queueTtlMs,
          flags:
            packFlags(s.urgent, s.forwarded) |
            a.requestFlags |
            (s.kind === "direct" && s.noDeliveryReceipt ? FLAG_NO_RECEIPT : 0),
          group_id: s.kind === "group" ? s.groupId : null,
          report_tag: s.reportTag,
          content: t.content,
          payload_id: s.kind === "group" ? a.messageId : null,
        });
        logged.push(true);
      }
    }
    for (const r of receipts) {
      rows.push(r.row);
      logged.push(false);
      results[r.index] = {
        outcome: { kind: "sent", messageId: r.row.message_id, serverTimestampMs, duplicate: false },
      };
    }

    // The sender accepts whom it messages first (then the peer's replies are not requests).
    const relationships = new Map<string, { owner: string; peer: string; app: number }>();
    for (const a of accepted) {
      if (!a.recordSenderRelationship || a.send.kind !== "direct") continue;
      const owner = a.send.sender.accountId;
      const peer = a.send.destinationAccountId;
      relationships.set(`${owner}/${peer}`, { owner, peer, app: a.send.sender.app });
    }
    const recorded =
      relationships.size === 0
        ? undefined
        : insertAcceptedRelationships(opts.db, [...relationships.values()]).catch((err: unknown) => {
            // The next send to that peer records it again.
            opts.log.warn({ err, relationships: relationships.size }, "relationships not recorded");
          });
    const committed =
      rows.length === 0 && accepted.length === 0
        ? { logged: new Set<string>(), queued: new Map<string, { seq: number; app: number }>() }
        : await commitQueueBatch(opts.db, {
            sendLog: accepted.map((a) => ({
              senderAccountId: a.send.sender.accountId,
              senderDeviceId: a.send.sender.deviceId,
              clientMessageId: a.send.clientMessageId,
              app: a.send.sender.app,
              messageId: a.messageId,
              serverTimestampMs,
            })),
            rows,
            logged,
            payloads: accepted.flatMap((a) =>
              a.send.kind === "group"
                ? [{ messageId: a.messageId, app: a.send.sender.app, content: a.send.content }]
                : [],
            ),
          });

    await recorded;
    // A send whose key another instance committed meanwhile is a retry: answer with that result.
    const raced = accepted.filter((a) => !committed.logged.has(a.messageId));
    const found =
      raced.length === 0
        ? new Map<string, { messageId: string; serverTimestampMs: number }>()
        : await findSendLog(
            opts.db,
            raced.map((a) => ({
              senderAccountId: a.send.sender.accountId,
              senderDeviceId: a.send.sender.deviceId,
              clientMessageId: a.send.clientMessageId,
            })),
          );
    for (const a of accepted) {
      if (committed.logged.has(a.messageId)) {
        results[a.index] = {
          outcome: { kind: "sent", messageId: a.messageId, serverTimestampMs, duplicate: false },
        };
        continue;
      }
      const f = found.get(
        sendLogKey(a.send.sender.accountId, a.send.sender.deviceId, a.send.clientMessageId),
      );
      results[a.index] = f
        ? { outcome: { kind: "sent", ...f, duplicate: true } }
        : {
            error: new AppError(
              Code.Aborted,
              "CONCURRENT_SEND",
              "a concurrent send with this client_message_id failed; retry",
            ),
          };
    }

    // Later occurrences of a key within this batch answer like the first one.
    for (const { send: s, index } of sends) {
      if (results[index]) continue;
      const first = firstByKey.get(sendLogKey(s.sender.accountId, s.sender.deviceId, s.clientMessageId));
      const r = first === undefined ? undefined : results[first];
      results[index] =
        r && "outcome" in r && r.outcome.kind === "sent"
          ? { outcome: { ...r.outcome, duplicate: true } }
          : (r ?? { error: new AppError(Code.Internal, "INTERNAL", "internal error") });
    }

    const events: Uint8Array[] = [];
    const keys: Array<{ accountId: string; deviceId: number }> = [];
    const perAppPair = new Map<number, number>();
    for (const row of rows) {
      const q = committed.queued.get(queuedKey(row));
      if (!q) continue; // raced send, or the device vanished
      if ((row.flags & QUEUE_FLAG_HELD) !== 0) continue; // a held request wakes no one
      // Encoded straight from the row (envelope-wire.ts): no Envelope object on the hot path. The
      // row is completed in place (it is not used after this batch) rather than copied.
      const queued = row as QueueInsert & { seq: number };
      queued.app = q.app;
      queued.seq = q.seq;
      if (queued.content === null && queued.payload_id !== null)
        queued.content = groupContent.get(queued.payload_id) ?? null;
      events.push(encodeQueuedMessageEvent(queued, opts.franker));
      keys.push({ accountId: row.account_id, deviceId: row.device_id });
      const pair = row.source_app * 256 + q.app;
      perAppPair.set(pair, (perAppPair.get(pair) ?? 0) + 1);
    }
    for (const [pair, n] of perAppPair) {
      opts.metrics.queued.inc(
        { source_app: appLabel(Math.floor(pair / 256)), destination_app: appLabel(pair % 256) },
        n,
      );
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
      if (inFlight > 0)
        await new Promise<void>((resolve) => {
          idle = resolve;
        });
      await Promise.all(publishes);
    },
  };
}
