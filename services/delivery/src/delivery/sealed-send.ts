// The sealed-sender send path: authorised by the recipient's unidentified access key, stored
// and delivered with no sender identity at all.
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
// The package root does not re-export the multi-recipient message parser.
import SealedSenderMultiRecipientMessage from "@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js";
import { AppError, Code } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import {
  newEnvelope,
  EnvelopeType,
  type SendMessageRequest,
  type SendMultiRecipientMessageRequest,
} from "@switchboard/proto";
import type { RateLimiter } from "@switchboard/ratelimit";
import {
  commitQueueBatch,
  findSendLog,
  findUnidentifiedAccess,
  findUnidentifiedAccessMany,
  isRetryableTransactionError,
  listQueueDevices,
  queuedKey,
  sendLogKey,
  type Database,
  type QueueDevice,
  type QueueInsert,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { checkDeviceList } from "../domain/device-list.js";
import { packFlags, queuedMessageToEnvelope } from "../domain/envelope.js";
import type { Franker } from "../domain/franking.js";
import {
  invalid,
  MAX_MESSAGES_PER_SEND,
  requireCiphertext,
  requireClientMessageId,
  requireUuid,
} from "../domain/limits.js";
import { ACCESS_KEY_BYTES, accessKeyMatches } from "../domain/sealed-sender.js";
import type { Metrics } from "../metrics.js";
import { toDirectSend } from "../rpc/message-service.js";
import { encodeMessageEvent } from "./events.js";
import { createQueueBounds } from "./queue-bounds.js";
import { checkLimits, type RateLimitPolicies } from "./rate-limits.js";
import type { SendOutcome } from "./send-pipeline.js";

/** Recipient accounts one multi-recipient sealed send may name. */
export const MAX_MULTI_RECIPIENT_ACCOUNTS = 1_000;
/**
 * Multi-recipient messages per send: one per device "rank" (an account's 1st, 2nd, ... device),
 * so as many as an account may have devices.
 */
export const MAX_MULTI_RECIPIENT_MESSAGES = MAX_MESSAGES_PER_SEND;

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
   * Authorises and commits a sealed send (ephemeral: hands it to the recipient's connected
   * devices, stores nothing). Fails UNAUTHENTICATED (INVALID_ACCESS_KEY) for a wrong, missing or
   * malformed key and for unknown recipients alike; INVALID_ARGUMENT for a request naming a
   * sender or a non-sealed envelope type; RESOURCE_EXHAUSTED when rate limited or the
   * recipient's queue is full.
   */
  send(req: SendMessageRequest, metadata: Metadata): Promise<SendOutcome>;
  /**
   * Authorises a multi-recipient sealed send by the combined (XOR) access key of its recipients,
   * splits the libsignal SealedSenderMultiRecipientMessage per recipient account and commits one
   * row per recipient device with no sender, in one transaction (ephemeral: publishes to the
   * connected devices only). Outcomes `sent` or `group_mismatched`; errors as {@link send}, plus
   * INVALID_ARGUMENT (INVALID_MULTI_RECIPIENT_MESSAGE, INVALID_RECIPIENT, TOO_MANY_RECIPIENTS).
   */
  sendMultiRecipient(req: SendMultiRecipientMessageRequest, metadata: Metadata): Promise<SendOutcome>;
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

/** The fields of a sealed send that every recipient device's copy shares. */
interface SealedSendFields {
  clientMessageId: string;
  clientTimestampMs: number;
  urgent: boolean;
  forwarded: boolean;
  reportTag: Uint8Array | null;
}

/** One recipient's payload of a parsed multi-recipient message (INVALID_ARGUMENT if malformed). */
function payloadFor(
  parsed: SealedSenderMultiRecipientMessage,
  recipient: { deviceIds: number[]; registrationIds: number[] },
  index: number,
): Uint8Array {
  try {
    return parsed.messageForRecipient(recipient);
  } catch (cause) {
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_MULTI_RECIPIENT_MESSAGE",
      `messages[${index}] holds a malformed recipient payload`,
      { cause },
    );
  }
}

const copy = (b: Uint8Array): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(b.byteLength);
  out.set(b);
  return out;
};

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

  const queueBounds = createQueueBounds();

  /** Fails RESOURCE_EXHAUSTED (RECIPIENT_QUEUE_FULL) when any of `devices` has a full queue. */
  async function requireQueueRoom(devices: readonly QueueDevice[]): Promise<void> {
    // Count exactly only where the queue limit may be hit (queue-bounds.ts).
    const queued = await queueBounds.nearLimit(deps.db, devices, 1, deps.maxQueueLength);
    if ([...queued.values()].some((n) => n >= deps.maxQueueLength))
      throw new AppError(
        Code.ResourceExhausted,
        "RECIPIENT_QUEUE_FULL",
        "a recipient device's queue is full; retry later",
        { retryAfterMs: 60_000 },
      );
  }

  /**
   * Ephemeral sealed sends skip PostgreSQL, as identified ones do: published to whichever streams
   * hold the devices now, with no source. Offline devices never see them.
   */
  async function publishEphemeral(
    targets: ReadonlyArray<{ accountId: string; deviceId: number; app: number; content: Uint8Array }>,
    send: SealedSendFields,
  ): Promise<SendOutcome> {
    const messageId = randomUUID();
    const serverTimestampMs = Date.now();
    const events = targets.map((t) => ({
      key: { accountId: t.accountId, deviceId: t.deviceId },
      payload: encodeMessageEvent(
        newEnvelope({
          id: messageId,
          clientMessageId: send.clientMessageId,
          type: EnvelopeType.SEALED_SENDER,
          destination: { accountId: t.accountId, deviceId: t.deviceId },
          destinationApp: t.app,
          content: t.content,
          serverTimestampMs: BigInt(serverTimestampMs),
          clientTimestampMs: BigInt(send.clientTimestampMs),
          ephemeral: true,
          forwarded: send.forwarded,
          sequence: 0n,
        }),
      ),
    }));
    await deps.fanout.publish(events);
    deps.metrics.sends.inc({ kind: "ephemeral", outcome: "sent" });
    return { kind: "sent", messageId, serverTimestampMs, duplicate: false };
  }

  /**
   * Commits one row per target device with no sender, and an idempotency entry per recipient
   * account (keyed by the recipient, device 0), in one transaction; then publishes wake-ups.
   */
  async function commitAndPublish(
    targets: ReadonlyArray<{ accountId: string; deviceId: number; content: Uint8Array }>,
    accountApps: ReadonlyMap<string, number>,
    send: SealedSendFields,
  ): Promise<SendOutcome> {
    const messageId = randomUUID();
    const serverTimestampMs = Date.now();
    const accounts = [...new Set(targets.map((t) => t.accountId))];
    const rows: Array<Omit<QueueInsert, "app">> = targets.map((t) => ({
      account_id: t.accountId,
      device_id: t.deviceId,
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
      content: t.content,
      payload_id: null,
    }));
    const sendLog = accounts.map((accountId) => ({
      senderAccountId: accountId,
      senderDeviceId: SEALED_LOG_DEVICE,
      clientMessageId: send.clientMessageId,
      app: accountApps.get(accountId) ?? 0,
      messageId,
      serverTimestampMs,
    }));
    let committed;
    for (let attempt = 1; ; attempt++) {
      try {
        committed = await commitQueueBatch(deps.db, {
          sendLog,
          rows,
          logged: rows.map(() => true),
          payloads: [],
        });
        break;
      } catch (err) {
        if (attempt < MAX_TX_ATTEMPTS && isRetryableTransactionError(err)) continue;
        throw err;
      }
    }
    if (!committed.logged.has(messageId)) {
      // A retry raced the original in another instance: answer with the original's result.
      const key = { senderAccountId: accounts[0] ?? "", senderDeviceId: SEALED_LOG_DEVICE };
      const found = await findSendLog(deps.db, [{ ...key, clientMessageId: send.clientMessageId }]);
      const f = found.get(sendLogKey(key.senderAccountId, SEALED_LOG_DEVICE, send.clientMessageId));
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
      const q = committed.queued.get(queuedKey(row));
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
  }

  return {
    isSealed: (metadata) => metadata.get(ACCESS_KEY_METADATA).length > 0,

    async send(req, metadata) {
      const accessKey = accessKeyOf(metadata);
      if (req.sender && (req.sender.accountId !== "" || req.sender.deviceId !== 0))
        throw invalid("SENDER_NOT_ALLOWED", "a sealed-sender send must not name a sender");
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

      if (req.ephemeral) {
        const current = await listQueueDevices(deps.db, [dest]);
        if (current.length === 0) return { kind: "recipient_not_found" };
        const check = checkDeviceList(current, send.messages);
        if (check.kind === "mismatched")
          return { kind: "mismatched", accountId: dest, missing: check.missing, extra: check.extra };
        if (check.kind === "stale") return { kind: "stale", accountId: dest, stale: check.stale };
        const apps = new Map(current.map((d) => [d.deviceId, d.app]));
        return publishEphemeral(
          send.messages.map((m) => ({
            accountId: dest,
            deviceId: m.deviceId,
            app: apps.get(m.deviceId) ?? 0,
            content: m.content,
          })),
          send,
        );
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
      await requireQueueRoom(current);

      return commitAndPublish(
        send.messages.map((m) => ({ accountId: dest, deviceId: m.deviceId, content: m.content })),
        new Map([[dest, current[0]?.app ?? 0]]),
        send,
      );
    },

    async sendMultiRecipient(req, metadata) {
      const combinedKey = accessKeyOf(metadata);
      if (req.messages.length === 0) throw invalid("MISSING_FIELD", "messages is required");
      if (req.messages.length > MAX_MULTI_RECIPIENT_MESSAGES)
        throw invalid("TOO_MANY_MESSAGES", `at most ${MAX_MULTI_RECIPIENT_MESSAGES} messages per send`);
      // Per recipient account: its devices as addressed, each with the payload of its message.
      const recipients = new Map<string, Map<number, { registrationId: number; payload: Uint8Array }>>();
      for (const [i, blob] of req.messages.entries()) {
        let parsed: SealedSenderMultiRecipientMessage;
        let listed: Readonly<Record<string, { deviceIds: number[]; registrationIds: number[] }>>;
        try {
          parsed = new SealedSenderMultiRecipientMessage(copy(blob));
          listed = parsed.recipientsByServiceIdString();
        } catch (cause) {
          throw new AppError(
            Code.InvalidArgument,
            "INVALID_MULTI_RECIPIENT_MESSAGE",
            `messages[${i}] is not a libsignal sealed-sender multi-recipient message`,
            { cause },
          );
        }
        for (const [serviceId, r] of Object.entries(listed)) {
          // ACI service id strings are bare UUIDs; PNIs ("PNI:...") cannot receive sealed sender.
          const accountId = requireUuid(serviceId, `messages[${i}] recipient`);
          const payload = requireCiphertext(
            payloadFor(parsed, r, i),
            deps.maxCiphertextBytes,
            `messages[${i}] payload`,
          );
          const devices =
            recipients.get(accountId) ?? new Map<number, { registrationId: number; payload: Uint8Array }>();
          recipients.set(accountId, devices);
          for (const [j, deviceId] of r.deviceIds.entries()) {
            if (devices.has(deviceId))
              throw invalid("DUPLICATE_DEVICE", `device ${deviceId} of ${accountId} is listed twice`);
            devices.set(deviceId, { registrationId: r.registrationIds[j] ?? 0, payload });
          }
          if (devices.size > MAX_MESSAGES_PER_SEND)
            throw invalid("TOO_MANY_MESSAGES", `at most ${MAX_MESSAGES_PER_SEND} devices per recipient`);
        }
      }
      const accountIds = [...recipients.keys()];
      if (accountIds.length === 0) throw invalid("NO_RECIPIENTS", "messages name no recipient");
      if (accountIds.length > MAX_MULTI_RECIPIENT_ACCOUNTS)
        throw invalid("TOO_MANY_RECIPIENTS", `at most ${MAX_MULTI_RECIPIENT_ACCOUNTS} recipient accounts`);
      const clientMessageId = requireClientMessageId(req.clientMessageId);

      // Authorisation, as Signal-Server's multi-recipient endpoint: the XOR of the keys of every
      // recipient without unrestricted access must equal the presented key. Any recipient that
      // is unknown or has sealed sender off fails the whole send with the same answer.
      const access = await findUnidentifiedAccessMany(deps.db, accountIds);
      const expected = Buffer.alloc(ACCESS_KEY_BYTES);
      let complete = true;
      for (const id of accountIds) {
        const a = access.get(id);
        if (a?.unrestricted) continue;
        if (a?.accessKey?.byteLength !== ACCESS_KEY_BYTES) {
          complete = false;
          continue;
        }
        for (let i = 0; i < ACCESS_KEY_BYTES; i++) expected[i] = (expected[i] ?? 0) ^ (a.accessKey[i] ?? 0);
      }
      if (!(timingSafeEqual(expected, combinedKey) && complete)) {
        deps.metrics.sends.inc({ kind: "sealed", outcome: "unauthorized" });
        throw invalidAccessKey();
      }
      const [limited] = await checkLimits(deps.limiter, deps.log, [
        accountIds.map((id) => {
          const a = access.get(id);
          const subject =
            a?.unrestricted || !a?.accessKeyHash
              ? `sealed>${id}:unrestricted`
              : `sealed>${id}:${Buffer.from(a.accessKeyHash).toString("hex").slice(0, 32)}`;
          return { policy: deps.policies.pair, subject };
        }),
      ]);
      if (limited) {
        deps.metrics.sends.inc({ kind: "sealed", outcome: "rate_limited" });
        throw limited;
      }

      // Idempotent per recipient (checked before the device lists, so a retry is answered from
      // the first send even if a device was added since): accounts that already have this
      // client_message_id are skipped; if all have it, the first send's result is the answer.
      const earlier = req.ephemeral
        ? new Map<string, { messageId: string; serverTimestampMs: number }>()
        : await findSendLog(
            deps.db,
            accountIds.map((id) => ({
              senderAccountId: id,
              senderDeviceId: SEALED_LOG_DEVICE,
              clientMessageId,
            })),
          );
      const done = accountIds.filter((id) => earlier.has(sendLogKey(id, SEALED_LOG_DEVICE, clientMessageId)));
      const first =
        done[0] === undefined
          ? undefined
          : earlier.get(sendLogKey(done[0], SEALED_LOG_DEVICE, clientMessageId));
      if (first && done.length === accountIds.length) return { kind: "sent", ...first, duplicate: true };

      const current = await listQueueDevices(deps.db, accountIds);
      const byAccount = new Map<string, QueueDevice[]>();
      for (const d of current) byAccount.set(d.accountId, [...(byAccount.get(d.accountId) ?? []), d]);
      const mismatched: Array<{ accountId: string; missing: number[]; extra: number[] }> = [];
      const stale: Array<{ accountId: string; stale: number[] }> = [];
      for (const [id, devices] of recipients) {
        const check = checkDeviceList(
          byAccount.get(id) ?? [],
          [...devices].map(([deviceId, d]) => ({ deviceId, registrationId: d.registrationId })),
        );
        if (check.kind === "mismatched") mismatched.push({ accountId: id, ...check });
        else if (check.kind === "stale") stale.push({ accountId: id, stale: check.stale });
      }
      if (mismatched.length > 0 || stale.length > 0) return { kind: "group_mismatched", mismatched, stale };

      const targets = [...recipients].flatMap(([accountId, devices]) =>
        [...devices].map(([deviceId, d]) => ({ accountId, deviceId, content: d.payload })),
      );
      const send = {
        clientMessageId,
        clientTimestampMs: Number(req.clientTimestampMs),
        urgent: req.urgent,
        forwarded: req.forwarded,
        reportTag: null,
      };
      const apps = new Map(current.map((d) => [`${d.accountId}/${d.deviceId}`, d.app]));
      if (req.ephemeral)
        return publishEphemeral(
          targets.map((t) => ({ ...t, app: apps.get(`${t.accountId}/${t.deviceId}`) ?? 0 })),
          send,
        );

      const fresh = targets.filter((t) => !done.includes(t.accountId));
      await requireQueueRoom(current.filter((d) => !done.includes(d.accountId)));
      const accountApps = new Map(current.map((d) => [d.accountId, d.app]));
      return commitAndPublish(fresh, accountApps, send);
    },
  };
}
