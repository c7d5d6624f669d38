// The sealed-sender send path: authorised by the recipient's unidentified access key, stored
// and delivered with no sender identity at all.
import { createHash, randomUUID } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import { EnvelopeType, type SendMessageRequest } from "@switchboard/proto";
import type { RateLimiter } from "@switchboard/ratelimit";
import {
  commitQueueBatch,
  countQueued,
  findSendLog,
  findUnidentifiedAccess,
  isRetryableTransactionError,
  listQueueDevices,
  sendLogKey,
  type Database,
  type QueueInsert,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { checkDeviceList } from "../domain/device-list.js";
import { packFlags, queuedMessageToEnvelope } from "../domain/envelope.js";
import type { Franker } from "../domain/franking.js";
import { invalid } from "../domain/limits.js";
import { ACCESS_KEY_BYTES, accessKeyMatches } from "../domain/sealed-sender.js";
import type { Metrics } from "../metrics.js";
import { toDirectSend } from "../rpc/message-service.js";
import { encodeMessageEvent } from "./events.js";
import { checkLimits, type RateLimitPolicies } from "./rate-limits.js";
import type { SendOutcome } from "./send-pipeline.js";

/** The metadata key carrying the recipient's unidentified access key (base64). */
export const ACCESS_KEY_METADATA = "unidentified-access-key";

/**
 * The idempotency log is keyed by sender; a sealed send has none, so its entry is keyed by
 * (recipient account, device 0, client_message_id). Device ids start at 1, so 0 never collides.
 */
const SEALED_LOG_DEVICE = 0;
const MAX_TX_ATTEMPTS = 4;

/** Sends sealed-sender messages. */
export interface SealedSender {
  /** True when the call carries an unidentified access key (and is therefore a sealed send). */
  isSealed(metadata: Metadata): boolean;
  /**
   * Authorises and commits a sealed send. Fails UNAUTHENTICATED (INVALID_ACCESS_KEY) for a wrong,
   * missing or malformed key and for unknown recipients alike; INVALID_ARGUMENT for a request
   * naming a sender, a non-sealed envelope type or an ephemeral flag; RESOURCE_EXHAUSTED when
   * rate limited or the recipient's queue is full.
   */
  send(req: SendMessageRequest, metadata: Metadata): Promise<SendOutcome>;
}

/** Dependencies of {@link createSealedSender}. */
export interface SealedSenderDeps {
  db: Kysely<Database>;
  fanout: Fanout;
  limiter: RateLimiter;
  policies: RateLimitPolicies;
  metrics: Metrics;
  log: Logger;
  franker: Franker;
  maxCiphertextBytes: number;
  maxQueueLength: number;
  queueTtlMs: number;
}

const invalidAccessKey = () =>
  new AppError(
    Code.Unauthenticated,
    "INVALID_ACCESS_KEY",
    "the unidentified access key does not authorise sealed-sender messages to this account",
  );

const NO_SENDER = { accountId: "", deviceId: 0, app: 0, providerId: "" };

/**
 * Creates the sealed-sender path. Each send is its own transaction (no group commit): it checks
 * the recipient's device list like an identified send, then queues rows whose source columns are
 * empty. Wake-ups are published after the commit, as for identified sends.
 */
export function createSealedSender(deps: SealedSenderDeps): SealedSender {
  function accessKeyOf(metadata: Metadata): Uint8Array {
    const raw = metadata.get(ACCESS_KEY_METADATA)[0];
    const text = typeof raw === "string" ? raw : raw ? raw.toString("utf8") : "";
    const key = Buffer.from(text, "base64");
    if (key.byteLength !== ACCESS_KEY_BYTES) throw invalidAccessKey();
    return new Uint8Array(key);
  }

  async function commit(
    destinationAccountId: string,
    clientMessageId: string,
    rows: Array<Omit<QueueInsert, "app">>,
    messageId: string,
    serverTimestampMs: number,
    destinationApp: number,
  ) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await commitQueueBatch(deps.db, {
          sendLog: [
            {
              senderAccountId: destinationAccountId,
              senderDeviceId: SEALED_LOG_DEVICE,
              clientMessageId,
              app: destinationApp,
              messageId,
              serverTimestampMs,
            },
          ],
          rows,
          logged: rows.map(() => true),
          payloads: [],
        });
      } catch (err) {
        if (attempt < MAX_TX_ATTEMPTS && isRetryableTransactionError(err)) continue;
        throw err;
      }
    }
  }

  return {
    isSealed: (metadata) => metadata.get(ACCESS_KEY_METADATA).length > 0,

    async send(req, metadata) {
      const accessKey = accessKeyOf(metadata);
      if (req.sender && (req.sender.accountId !== "" || req.sender.deviceId !== 0))
        throw invalid("SENDER_NOT_ALLOWED", "a sealed-sender send must not name a sender");
      if (req.ephemeral) throw invalid("EPHEMERAL_NOT_SUPPORTED", "sealed-sender sends cannot be ephemeral");
      const send = toDirectSend(req, NO_SENDER, deps.maxCiphertextBytes);
      for (const [i, m] of send.messages.entries())
        if (m.type !== EnvelopeType.SEALED_SENDER)
          throw invalid("INVALID_ENVELOPE_TYPE", `messages[${i}].type must be ENVELOPE_TYPE_SEALED_SENDER`);
      const dest = send.destinationAccountId;

      const access = await findUnidentifiedAccess(deps.db, dest);
      const byKey = accessKeyMatches(accessKey, access?.accessKeyHash);
      if (!access || !(byKey || access.unrestricted)) {
        deps.metrics.sends.inc({ kind: "sealed", outcome: "unauthorized" });
        throw invalidAccessKey();
      }
      // One bucket per (recipient, access key); senders admitted only by `unrestricted` share one
      // per recipient, since they can present any key.
      const subject = byKey
        ? `sealed>${dest}:${createHash("sha256").update(accessKey).digest("hex").slice(0, 32)}`
        : `sealed>${dest}:unrestricted`;
      const [limited] = await checkLimits(deps.limiter, deps.log, [
        [{ policy: deps.policies.pair, subject }],
      ]);
      if (limited) {
        deps.metrics.sends.inc({ kind: "sealed", outcome: "rate_limited" });
        throw limited;
      }

      const earlier = await findSendLog(deps.db, [
        { senderAccountId: dest, senderDeviceId: SEALED_LOG_DEVICE, clientMessageId: send.clientMessageId },
      ]);
      const prior = earlier.get(sendLogKey(dest, SEALED_LOG_DEVICE, send.clientMessageId));
      if (prior) return { kind: "sent", ...prior, duplicate: true };

      const current = await listQueueDevices(deps.db, [dest]);
      if (current.length === 0) return { kind: "recipient_not_found" };
      const check = checkDeviceList(current, send.messages);
      if (check.kind === "mismatched")
        return { kind: "mismatched", accountId: dest, missing: check.missing, extra: check.extra };
      if (check.kind === "stale") return { kind: "stale", accountId: dest, stale: check.stale };
      const nearFull = current.filter((d) => d.queueSeq + 1 >= deps.maxQueueLength);
      const queued = await countQueued(deps.db, nearFull);
      if ([...queued.values()].some((n) => n >= deps.maxQueueLength)) {
        throw new AppError(
          Code.ResourceExhausted,
          "RECIPIENT_QUEUE_FULL",
          "a recipient device's queue is full; retry later",
          {
            retryAfterMs: 60_000,
          },
        );
      }

      const messageId = randomUUID();
      const serverTimestampMs = Date.now();
      const rows: Array<Omit<QueueInsert, "app">> = send.messages.map((m) => ({
        account_id: dest,
        device_id: m.deviceId,
        message_id: messageId,
        type: EnvelopeType.SEALED_SENDER,
        // The point of sealed sender: nothing about the sender is stored.
        source_account_id: null,
        source_device_id: null,
        source_app: 0,
        source_provider_id: "",
        source_registration_id: 0,
        client_message_id: send.clientMessageId,
        client_timestamp_ms: send.clientTimestampMs,
        server_timestamp_ms: serverTimestampMs,
        expires_at_ms: serverTimestampMs + deps.queueTtlMs,
        flags: packFlags(send.urgent, send.forwarded),
        group_id: null,
        report_tag: send.reportTag,
        content: m.content,
        payload_id: null,
      }));
      const committed = await commit(
        dest,
        send.clientMessageId,
        rows,
        messageId,
        serverTimestampMs,
        current[0]?.app ?? 0,
      );
      if (!committed.logged.has(messageId)) {
        // A retry raced the original in another instance: answer with the original's result.
        const found = await findSendLog(deps.db, [
          { senderAccountId: dest, senderDeviceId: SEALED_LOG_DEVICE, clientMessageId: send.clientMessageId },
        ]);
        const f = found.get(sendLogKey(dest, SEALED_LOG_DEVICE, send.clientMessageId));
        if (!f)
          throw new AppError(
            Code.Aborted,
            "CONCURRENT_SEND",
            "a concurrent send with this client_message_id failed; retry",
          );
        return { kind: "sent", ...f, duplicate: true };
      }
      const events: Array<{ key: { accountId: string; deviceId: number }; payload: Uint8Array }> = [];
      for (const row of rows) {
        const q = committed.queued.get(`${row.account_id}/${row.device_id}/${row.message_id}`);
        if (!q) continue;
        const envelope = queuedMessageToEnvelope({ ...row, app: q.app, seq: q.seq }, deps.franker);
        events.push({
          key: { accountId: row.account_id, deviceId: row.device_id },
          payload: encodeMessageEvent(envelope),
        });
      }
      try {
        await deps.fanout.publish(events);
      } catch (err) {
        // Committed messages stay queued; streams find them on their next read.
        deps.log.warn({ err, events: events.length }, "wake-up publish failed");
      }
      deps.metrics.sends.inc({ kind: "sealed", outcome: "sent" });
      return { kind: "sent", messageId, serverTimestampMs, duplicate: false };
    },
  };
}
