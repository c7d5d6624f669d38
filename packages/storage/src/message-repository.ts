import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, QueuedMessageRow } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A device key as used across the message path. */
export interface DeviceRef {
  accountId: string;
  deviceId: number;
}

/** A message row to queue; `seq` is assigned when it is queued (`commitQueueBatch`). */
export type QueueInsert = Omit<QueuedMessageRow, "seq">;

/** One entry of the idempotency log. */
export interface SendLogEntry {
  senderAccountId: string;
  senderDeviceId: number;
  clientMessageId: string;
  app: number;
  messageId: string;
  serverTimestampMs: number;
}

/** A queued message read back for delivery; `content` is resolved from a shared payload if needed. */
export type QueuedMessage = Omit<QueuedMessageRow, "payload_id">;

/** A removed message, as returned by {@link deleteMessages} (enough to build a delivery receipt). */
export type DeletedMessage = Pick<
  QueuedMessageRow,
  | "account_id"
  | "device_id"
  | "message_id"
  | "app"
  | "type"
  | "source_account_id"
  | "source_device_id"
  | "client_message_id"
  | "client_timestamp_ms"
  | "server_timestamp_ms"
  | "group_id"
  | "flags"
>;

/** The key of an idempotency entry (`account/device/clientMessageId`), as {@link findSendLog} reports it. */
export const sendLogKey = (accountId: string, deviceId: number, clientMessageId: string): string =>
  `${accountId}/${deviceId}/${clientMessageId}`;

/** Looks up earlier sends by idempotency key. */
export async function findSendLog(
  db: Db,
  keys: ReadonlyArray<{ senderAccountId: string; senderDeviceId: number; clientMessageId: string }>,
): Promise<Map<string, { messageId: string; serverTimestampMs: number }>> {
  const out = new Map<string, { messageId: string; serverTimestampMs: number }>();
  if (keys.length === 0) return out;
  const r = await sql<{
    sender_account_id: string;
    sender_device_id: number;
    client_message_id: string;
    message_id: string;
    server_timestamp_ms: number;
  }>`
    SELECT s.sender_account_id, s.sender_device_id, s.client_message_id, s.message_id, s.server_timestamp_ms
    FROM send_log s
    JOIN unnest(${keys.map((k) => k.senderAccountId)}::uuid[], ${keys.map((k) => k.senderDeviceId)}::int[],
                ${keys.map((k) => k.clientMessageId)}::text[]) AS k(a, d, c)
      ON s.sender_account_id = k.a AND s.sender_device_id = k.d AND s.client_message_id = k.c
  `.execute(db);
  for (const x of r.rows) {
    out.set(sendLogKey(x.sender_account_id, x.sender_device_id, x.client_message_id), {
      messageId: x.message_id,
      serverTimestampMs: x.server_timestamp_ms,
    });
  }
  return out;
}

/**
 * Reads up to `limit` unexpired messages of one device with `seq > afterSeq`, in sequence order,
 * resolving shared group payloads. Because sequences commit in order per device, a reader that
 * advances its cursor to the last seq it saw never skips a message. Held message requests (flag
 * bit 16) are skipped: accepting one re-queues it behind the cursor (`releaseHeldMessages`).
 */
export async function readQueue(
  db: Db,
  device: DeviceRef,
  afterSeq: number,
  limit: number,
  nowMs: number,
): Promise<QueuedMessage[]> {
  const r = await sql<QueuedMessage>`/* sb:prepare queue_read */
    SELECT q.account_id, q.device_id, q.seq, q.message_id, q.app, q.type, q.source_account_id, q.source_device_id,
           q.source_app, q.source_provider_id, q.source_registration_id, q.client_message_id, q.client_timestamp_ms,
           q.server_timestamp_ms, q.expires_at_ms, q.flags, q.group_id, q.report_tag,
           COALESCE(q.content, p.content) AS content
    FROM queued_messages q
    LEFT JOIN group_payloads p ON p.message_id = q.payload_id
    WHERE q.account_id = ${device.accountId} AND q.device_id = ${device.deviceId} AND q.seq > ${afterSeq}
      AND q.expires_at_ms > ${nowMs} AND (q.flags & 16) = 0
    ORDER BY q.seq
    LIMIT ${limit}
  `.execute(db);
  return r.rows;
}

/**
 * Of the given devices, those with a deliverable message after their `afterSeq` (unexpired, not a
 * held message request): the periodic re-read of many live subscriptions in one statement, so
 * that thousands of idle streams cost one query per poll tick instead of one each.
 */
export async function findPendingQueues(
  db: Db,
  probes: ReadonlyArray<DeviceRef & { afterSeq: number }>,
  nowMs: number,
): Promise<DeviceRef[]> {
  if (probes.length === 0) return [];
  const r = await sql<{ account_id: string; device_id: number }>`/* sb:prepare queue_probe */
    SELECT k.a AS account_id, k.d AS device_id
    FROM unnest(${probes.map((p) => p.accountId)}::uuid[], ${probes.map((p) => p.deviceId)}::int[],
                ${probes.map((p) => p.afterSeq)}::bigint[]) AS k(a, d, s)
    WHERE EXISTS (
      SELECT 1 FROM queued_messages q
      WHERE q.account_id = k.a AND q.device_id = k.d AND q.seq > k.s
        AND q.expires_at_ms > ${nowMs} AND (q.flags & 16) = 0
    )
  `.execute(db);
  return r.rows.map((x) => ({ accountId: x.account_id, deviceId: x.device_id }));
}

/**
 * Deletes acknowledged messages by (device, message id). Unknown ids and held message requests
 * (flag bit 16: declined or accepted, never acknowledged) are ignored. Returns the rows
 * removed. Takes no device locks, so acknowledgements never wait for sends.
 */
export async function deleteMessages(
  trx: Db,
  acks: ReadonlyArray<DeviceRef & { messageId: string }>,
): Promise<DeletedMessage[]> {
  if (acks.length === 0) return [];
  const r = await sql<DeletedMessage>`
    DELETE FROM queued_messages q
    USING unnest(${acks.map((a) => a.accountId)}::uuid[], ${acks.map((a) => a.deviceId)}::int[], ${acks.map((a) => a.messageId)}::uuid[]) AS k(a, d, m)
    WHERE q.account_id = k.a AND q.device_id = k.d AND q.message_id = k.m AND (q.flags & 16) = 0
    RETURNING q.account_id, q.device_id, q.message_id, q.app, q.type, q.source_account_id, q.source_device_id,
              q.client_message_id, q.client_timestamp_ms, q.server_timestamp_ms, q.group_id, q.flags
  `.execute(trx);
  return r.rows;
}

/**
 * Housekeeping, run periodically by one or more instances: deletes up to `limit` expired queue
 * rows, group payloads no row references any more, and idempotency entries older than
 * `sendLogRetentionMs`. Returns how many queue rows expired.
 */
export async function sweepExpired(
  db: Kysely<Database>,
  nowMs: number,
  limit: number,
  sendLogRetentionMs: number,
): Promise<{ expired: number; payloads: number; sendLog: number }> {
  const expired = await db.transaction().execute(async (trx) => {
    const r = await sql<{ account_id: string; device_id: number }>`
      DELETE FROM queued_messages q
      USING (SELECT account_id, device_id, seq FROM queued_messages WHERE expires_at_ms <= ${nowMs} LIMIT ${limit} FOR UPDATE SKIP LOCKED) x
      WHERE q.account_id = x.account_id AND q.device_id = x.device_id AND q.seq = x.seq
      RETURNING q.account_id, q.device_id
    `.execute(trx);
    return r.rows.length;
  });
  const payloads = await sql`
    DELETE FROM group_payloads p
    WHERE p.created_at < now() - interval '1 minute'
      AND NOT EXISTS (SELECT 1 FROM queued_messages q WHERE q.payload_id = p.message_id)
  `.execute(db);
  const sendLog = await sql`
    DELETE FROM send_log WHERE created_at < now() - make_interval(secs => ${sendLogRetentionMs / 1000})
  `.execute(db);
  return {
    expired,
    payloads: Number(payloads.numAffectedRows ?? 0),
    sendLog: Number(sendLog.numAffectedRows ?? 0),
  };
}

/**
 * Exact number of messages queued per device (an index-only count; used when a device's sequence
 * says its queue might be near the limit).
 */
export async function countQueued(db: Db, devices: readonly DeviceRef[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (devices.length === 0) return out;
  const r = await sql<{ account_id: string; device_id: number; n: number }>`
    SELECT k.a AS account_id, k.dv AS device_id,
           (SELECT count(*) FROM queued_messages q WHERE q.account_id = k.a AND q.device_id = k.dv)::int AS n
    FROM unnest(${devices.map((d) => d.accountId)}::uuid[], ${devices.map((d) => d.deviceId)}::int[]) AS k(a, dv)
  `.execute(db);
  for (const x of r.rows) out.set(`${x.account_id}/${x.device_id}`, x.n);
  return out;
}
