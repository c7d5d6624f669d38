import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, QueuedMessageRow } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A device key as used across the message path. */
export interface DeviceRef {
  accountId: string;
  deviceId: number;
}

/** A recipient device as locked for a send: current registration id and last queue sequence. */
export interface LockedDevice extends DeviceRef {
  registrationId: number;
  app: number;
  /** Last sequence handed out; an upper bound on how many messages can be queued. */
  queueSeq: number;
}

/** A message row to queue; `seq` is assigned by {@link queueMessages}. */
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
>;

const buf = (b: Uint8Array | null): Buffer | null =>
  b === null ? null : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * Locks every device of the given accounts (`FOR UPDATE`, in account/device order so concurrent
 * batches cannot deadlock) and returns them. Holding these locks until commit is what makes
 * queue sequence numbers commit in order per device.
 */
export async function lockDevicesOfAccounts(
  trx: Transaction<Database>,
  accountIds: readonly string[],
): Promise<LockedDevice[]> {
  if (accountIds.length === 0) return [];
  const r = await sql<{
    account_id: string;
    device_id: number;
    registration_id: number;
    app: number;
    queue_seq: number;
  }>`
    SELECT account_id, device_id, registration_id, app, queue_seq FROM devices
    WHERE account_id = ANY(${[...accountIds]}::uuid[])
    ORDER BY account_id, device_id
    FOR UPDATE
  `.execute(trx);
  return r.rows.map((d) => ({
    accountId: d.account_id,
    deviceId: d.device_id,
    registrationId: d.registration_id,
    app: d.app,
    queueSeq: d.queue_seq,
  }));
}

/** Locks specific devices in key order; returns those that exist. */
export async function lockDevices(
  trx: Transaction<Database>,
  devices: readonly DeviceRef[],
): Promise<LockedDevice[]> {
  if (devices.length === 0) return [];
  const r = await sql<{
    account_id: string;
    device_id: number;
    registration_id: number;
    app: number;
    queue_seq: number;
  }>`
    SELECT d.account_id, d.device_id, d.registration_id, d.app, d.queue_seq
    FROM devices d
    JOIN unnest(${devices.map((x) => x.accountId)}::uuid[], ${devices.map((x) => x.deviceId)}::int[]) AS k(a, dv)
      ON d.account_id = k.a AND d.device_id = k.dv
    ORDER BY d.account_id, d.device_id
    FOR UPDATE OF d
  `.execute(trx);
  return r.rows.map((d) => ({
    accountId: d.account_id,
    deviceId: d.device_id,
    registrationId: d.registration_id,
    app: d.app,
    queueSeq: d.queue_seq,
  }));
}

/**
 * Inserts idempotency entries, skipping ones whose key exists. Returns the keys inserted
 * (`account/device/clientMessageId`); a key not returned is a duplicate of an earlier send.
 */
export async function insertSendLog(
  trx: Transaction<Database>,
  entries: readonly SendLogEntry[],
): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const r = await sql<{ sender_account_id: string; sender_device_id: number; client_message_id: string }>`
    INSERT INTO send_log (sender_account_id, sender_device_id, client_message_id, app, message_id, server_timestamp_ms)
    SELECT * FROM unnest(
      ${entries.map((e) => e.senderAccountId)}::uuid[], ${entries.map((e) => e.senderDeviceId)}::int[],
      ${entries.map((e) => e.clientMessageId)}::text[], ${entries.map((e) => e.app)}::smallint[],
      ${entries.map((e) => e.messageId)}::uuid[], ${entries.map((e) => e.serverTimestampMs)}::bigint[])
    ON CONFLICT DO NOTHING
    RETURNING sender_account_id, sender_device_id, client_message_id
  `.execute(trx);
  return new Set(r.rows.map((x) => sendLogKey(x.sender_account_id, x.sender_device_id, x.client_message_id)));
}

/** The key {@link insertSendLog} reports inserted entries by. */
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

/** Stores one shared group payload. */
export async function insertGroupPayloads(
  trx: Transaction<Database>,
  payloads: ReadonlyArray<{ messageId: string; app: number; content: Uint8Array }>,
): Promise<void> {
  if (payloads.length === 0) return;
  await sql`
    INSERT INTO group_payloads (message_id, app, content)
    SELECT * FROM unnest(${payloads.map((p) => p.messageId)}::uuid[], ${payloads.map((p) => p.app)}::smallint[],
                         ${payloads.map((p) => buf(p.content))}::bytea[])
  `.execute(trx);
}

/**
 * Queues messages. Must run in the transaction that locked the destination devices: it advances
 * each device's `queue_seq` by the number of rows for it and numbers the rows in
 * array order. Returns the assigned sequence of each row, index-aligned with `rows`.
 */
export async function queueMessages(
  trx: Transaction<Database>,
  rows: readonly QueueInsert[],
): Promise<number[]> {
  if (rows.length === 0) return [];
  const counts = new Map<string, { accountId: string; deviceId: number; n: number }>();
  for (const r of rows) {
    const k = `${r.account_id}/${r.device_id}`;
    const c = counts.get(k);
    if (c) c.n += 1;
    else counts.set(k, { accountId: r.account_id, deviceId: r.device_id, n: 1 });
  }
  const inc = [...counts.values()];
  const ends = await sql<{ account_id: string; device_id: number; queue_seq: number }>`
    UPDATE devices d SET queue_seq = d.queue_seq + c.n
    FROM unnest(${inc.map((c) => c.accountId)}::uuid[], ${inc.map((c) => c.deviceId)}::int[], ${inc.map((c) => c.n)}::int[]) AS c(a, dv, n)
    WHERE d.account_id = c.a AND d.device_id = c.dv
    RETURNING d.account_id, d.device_id, d.queue_seq
  `.execute(trx);
  const next = new Map<string, number>();
  for (const e of ends.rows) {
    const k = `${e.account_id}/${e.device_id}`;
    next.set(k, e.queue_seq - (counts.get(k)?.n ?? 0) + 1);
  }
  const seqs = rows.map((r) => {
    const k = `${r.account_id}/${r.device_id}`;
    const s = next.get(k);
    if (s === undefined) throw new Error(`device ${k} vanished while locked`);
    next.set(k, s + 1);
    return s;
  });
  await sql`
    INSERT INTO queued_messages (account_id, device_id, seq, message_id, app, type, source_account_id, source_device_id,
      source_app, source_provider_id, source_registration_id, client_message_id, client_timestamp_ms, server_timestamp_ms,
      expires_at_ms, flags, group_id, report_tag, content, payload_id)
    SELECT * FROM unnest(
      ${rows.map((r) => r.account_id)}::uuid[], ${rows.map((r) => r.device_id)}::int[], ${seqs}::bigint[],
      ${rows.map((r) => r.message_id)}::uuid[], ${rows.map((r) => r.app)}::smallint[], ${rows.map((r) => r.type)}::smallint[],
      ${rows.map((r) => r.source_account_id)}::uuid[], ${rows.map((r) => r.source_device_id)}::int[],
      ${rows.map((r) => r.source_app)}::smallint[], ${rows.map((r) => r.source_provider_id)}::text[],
      ${rows.map((r) => r.source_registration_id)}::int[], ${rows.map((r) => r.client_message_id)}::text[],
      ${rows.map((r) => r.client_timestamp_ms)}::bigint[], ${rows.map((r) => r.server_timestamp_ms)}::bigint[],
      ${rows.map((r) => r.expires_at_ms)}::bigint[], ${rows.map((r) => r.flags)}::smallint[],
      ${rows.map((r) => r.group_id)}::uuid[], ${rows.map((r) => buf(r.report_tag))}::bytea[],
      ${rows.map((r) => buf(r.content))}::bytea[], ${rows.map((r) => r.payload_id)}::uuid[])
  `.execute(trx);
  return seqs;
}

/**
 * Reads up to `limit` unexpired messages of one device with `seq > afterSeq`, in sequence order,
 * resolving shared group payloads. Because sequences commit in order per device, a reader that
 * advances its cursor to the last seq it saw never skips a message.
 */
export async function readQueue(
  db: Db,
  device: DeviceRef,
  afterSeq: number,
  limit: number,
  nowMs: number,
): Promise<QueuedMessage[]> {
  const r = await sql<QueuedMessage>`
    SELECT q.account_id, q.device_id, q.seq, q.message_id, q.app, q.type, q.source_account_id, q.source_device_id,
           q.source_app, q.source_provider_id, q.source_registration_id, q.client_message_id, q.client_timestamp_ms,
           q.server_timestamp_ms, q.expires_at_ms, q.flags, q.group_id, q.report_tag,
           COALESCE(q.content, p.content) AS content
    FROM queued_messages q
    LEFT JOIN group_payloads p ON p.message_id = q.payload_id
    WHERE q.account_id = ${device.accountId} AND q.device_id = ${device.deviceId} AND q.seq > ${afterSeq}
      AND q.expires_at_ms > ${nowMs}
    ORDER BY q.seq
    LIMIT ${limit}
  `.execute(db);
  return r.rows;
}

/**
 * Deletes acknowledged messages by (device, message id). Unknown ids are ignored. Returns the rows
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
    WHERE q.account_id = k.a AND q.device_id = k.d AND q.message_id = k.m
    RETURNING q.account_id, q.device_id, q.message_id, q.app, q.type, q.source_account_id, q.source_device_id,
              q.client_message_id, q.client_timestamp_ms, q.server_timestamp_ms, q.group_id
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

/** Distinct devices of rows, in key order. */
export function uniqueDevices(rows: ReadonlyArray<{ account_id: string; device_id: number }>): DeviceRef[] {
  const seen = new Map<string, DeviceRef>();
  for (const r of rows)
    seen.set(`${r.account_id}/${r.device_id}`, { accountId: r.account_id, deviceId: r.device_id });
  return [...seen.values()].sort((x, y) =>
    x.accountId === y.accountId ? x.deviceId - y.deviceId : x.accountId < y.accountId ? -1 : 1,
  );
}
