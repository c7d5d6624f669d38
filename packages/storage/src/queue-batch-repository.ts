import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";
import type { QueueInsert, SendLogEntry } from "./message-repository.js";
import { relationshipKey, type SendPolicies } from "./relationship-repository.js";

/** A sender device as the send path needs it: its registration id and any earlier send with the key. */
export interface SenderCheck {
  /** Undefined when the device does not exist (removed). */
  registrationId: number | undefined;
  earlier: { messageId: string; serverTimestampMs: number } | undefined;
}

/** A destination device as read (unlocked) before a commit. */
export interface QueueDevice {
  accountId: string;
  deviceId: number;
  registrationId: number;
  app: number;
  /** Last queue sequence handed out: an upper bound on the device's queue length. */
  queueSeq: number;
}

const buf = (b: Uint8Array | null): Buffer | null =>
  b === null ? null : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * Packs the rows' contents into one buffer with per-row offsets and lengths (-1 for NULL). pg
 * sends a Buffer parameter in binary, while a `bytea[]` goes as hex text that pg builds, escapes
 * and PostgreSQL parses again, per row: for a commit batch of a few hundred messages that text
 * formatting was a measurable share of the delivery process's CPU.
 */
function packContents(contents: ReadonlyArray<Uint8Array | null>): {
  blob: Buffer;
  offsets: number[];
  lengths: number[];
} {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let total = 0;
  for (const c of contents) {
    offsets.push(total);
    lengths.push(c === null ? -1 : c.byteLength);
    total += c === null ? 0 : c.byteLength;
  }
  const blob = Buffer.allocUnsafe(total);
  contents.forEach((c, i) => {
    if (c !== null) blob.set(c, offsets[i]);
  });
  return { blob, offsets, lengths };
}

/** Current devices of accounts (no locks), ordered by account and device id. */
export async function listQueueDevices(
  db: Kysely<Database>,
  accountIds: readonly string[],
): Promise<QueueDevice[]> {
  if (accountIds.length === 0) return [];
  const r = await sql<{
    account_id: string;
    device_id: number;
    registration_id: number;
    app: number;
    queue_seq: number;
  }>`/* sb:prepare queue_devices */
    SELECT account_id, device_id, registration_id, app, queue_seq FROM devices
    WHERE account_id = ANY(${[...accountIds]}::uuid[])
    ORDER BY account_id, device_id
  `.execute(db);
  return r.rows.map((d) => ({
    accountId: d.account_id,
    deviceId: d.device_id,
    registrationId: d.registration_id,
    app: d.app,
    queueSeq: Number(d.queue_seq),
  }));
}

/** What {@link readSendFacts} reads for one commit batch. */
export interface SendFactsQuery {
  /** Sender devices and idempotency keys: whether each device exists and each key was used. */
  senders: ReadonlyArray<{ accountId: string; deviceId: number; clientMessageId: string }>;
  /** Accounts whose devices to list, as for {@link listQueueDevices}. */
  destinations: readonly string[];
  /** Relationships and accounts, as for `readSendPolicies`. */
  pairs: ReadonlyArray<{ owner: string; peer: string }>;
  policyAccounts: readonly string[];
}

/** The facts of one commit batch, from {@link readSendFacts}. */
export interface SendFacts {
  senders: SenderCheck[];
  /** Ordered by account and device id. */
  devices: QueueDevice[];
  policies: SendPolicies;
}

/**
 * The sender check (does each sending device exist, was its idempotency key used: index-aligned
 * with `senders`), {@link listQueueDevices} and `readSendPolicies` in ONE
 * prepared statement (one round trip, one parse/bind/execute instead of three): at the small
 * batches of low and moderate rates each statement's fixed cost, in the service and in
 * PostgreSQL, outweighed its rows. Each branch keeps the plan of its separate form
 * (primary-key probes, an index scan over the destination accounts).
 */
export async function readSendFacts(db: Kysely<Database>, q: SendFactsQuery): Promise<SendFacts> {
  const out: SendFacts = {
    senders: q.senders.map(() => ({ registrationId: undefined, earlier: undefined })),
    devices: [],
    policies: { relationships: new Map(), accounts: new Map() },
  };
  if (
    q.senders.length === 0 &&
    q.destinations.length === 0 &&
    q.pairs.length === 0 &&
    q.policyAccounts.length === 0
  )
    return out;
  const r = await sql<{
    kind: string;
    i: number | null;
    a: string | null;
    b: string | null;
    n1: number | null;
    n2: number | null;
    n3: number | null;
    m: string | null;
    ts: number | null;
    minor: boolean | null;
  }>`/* sb:prepare send_facts */
    SELECT 's' AS kind, k.i::int AS i, NULL::uuid AS a, NULL::uuid AS b, d.registration_id AS n1,
           NULL::int AS n2, NULL::int AS n3, s.message_id AS m, s.server_timestamp_ms AS ts, NULL::bool AS minor
    FROM unnest(${q.senders.map((k) => k.accountId)}::uuid[], ${q.senders.map((k) => k.deviceId)}::int[],
                ${q.senders.map((k) => k.clientMessageId)}::text[]) WITH ORDINALITY AS k(a, dv, c, i)
    LEFT JOIN LATERAL (
      SELECT registration_id FROM devices WHERE account_id = k.a AND device_id = k.dv LIMIT 1
    ) d ON true
    LEFT JOIN LATERAL (
      SELECT message_id, server_timestamp_ms FROM send_log
      WHERE sender_account_id = k.a AND sender_device_id = k.dv AND client_message_id = k.c LIMIT 1
    ) s ON true
    UNION ALL
    SELECT 'd', NULL, d.account_id, NULL, d.device_id, d.registration_id, d.app::int, NULL, d.queue_seq, NULL
    FROM devices d WHERE d.account_id = ANY(${[...q.destinations]}::uuid[])
    UNION ALL
    SELECT 'r', NULL, k.o, k.p, r.state::int, NULL, NULL, NULL, NULL, NULL
    FROM unnest(${q.pairs.map((p) => p.owner)}::uuid[], ${q.pairs.map((p) => p.peer)}::uuid[]) AS k(o, p)
    JOIN LATERAL (
      SELECT state FROM relationships WHERE owner_account_id = k.o AND peer_account_id = k.p LIMIT 1
    ) r ON true
    UNION ALL
    SELECT 'a', NULL, x.id, NULL, x.requests_policy::int, NULL, NULL, NULL, NULL, x.minor
    FROM unnest(${[...q.policyAccounts]}::uuid[]) AS u(id)
    JOIN LATERAL (SELECT id, requests_policy, minor FROM accounts WHERE id = u.id LIMIT 1) x ON true
  `.execute(db);
  for (const row of r.rows) {
    switch (row.kind) {
      case "s":
        out.senders[(row.i ?? 0) - 1] = {
          registrationId: row.n1 ?? undefined,
          earlier: row.m === null ? undefined : { messageId: row.m, serverTimestampMs: Number(row.ts) },
        };
        break;
      case "d":
        out.devices.push({
          accountId: row.a as string,
          deviceId: row.n1 as number,
          registrationId: row.n2 as number,
          app: row.n3 as number,
          queueSeq: Number(row.ts),
        });
        break;
      case "r":
        out.policies.relationships.set(relationshipKey(row.a as string, row.b ?? ""), row.n1 as number);
        break;
      default:
        out.policies.accounts.set(row.a as string, {
          minor: row.minor === true,
          requestsPolicy: row.n1 as number,
        });
    }
  }
  out.devices.sort((x, y) =>
    x.accountId === y.accountId ? x.deviceId - y.deviceId : x.accountId < y.accountId ? -1 : 1,
  );
  return out;
}

/** Member account ids per group, for the given groups. */
export async function listMembersOfGroups(
  db: Kysely<Database>,
  groupIds: readonly string[],
): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (groupIds.length === 0) return out;
  const r = await sql<{ group_id: string; account_id: string }>`
    SELECT group_id, account_id FROM group_members WHERE group_id = ANY(${[...groupIds]}::uuid[]) ORDER BY account_id
  `.execute(db);
  for (const row of r.rows) {
    const list = out.get(row.group_id) ?? [];
    list.push(row.account_id);
    out.set(row.group_id, list);
  }
  return out;
}

/** What {@link commitQueueBatch} writes. */
export interface QueueBatch {
  /** Idempotency entries of the batch's sends (one per send). */
  sendLog: readonly SendLogEntry[];
  /** Rows to queue, in per-device order. `app` is taken from the destination device. */
  rows: ReadonlyArray<Omit<QueueInsert, "app">>;
  /** Which rows belong to a send with an idempotency entry (false for delivery receipts). */
  logged: readonly boolean[];
  /** Shared group payloads, keyed by message id. */
  payloads: ReadonlyArray<{ messageId: string; app: number; content: Uint8Array }>;
}

/** What {@link commitQueueBatch} committed. */
export interface QueueBatchResult {
  /** Message ids whose idempotency entry this batch inserted (others raced an earlier send). */
  logged: Set<string>;
  /** Committed rows by {@link queuedKey} → sequence and the destination's app. */
  queued: Map<string, { seq: number; app: number }>;
}

/** The key {@link QueueBatchResult.queued} holds a committed row by: `account/device/messageId`. */
export const queuedKey = (r: Pick<QueueInsert, "account_id" | "device_id" | "message_id">): string =>
  `${r.account_id}/${r.device_id}/${r.message_id}`;

/**
 * Commits a batch of sends in ONE statement (one round trip, one transaction): claims the
 * idempotency keys (`ON CONFLICT DO NOTHING`: a key committed meanwhile by a racing retry leaves
 * that send's rows out), locks the destination devices in key order, advances each device's
 * `queue_seq` by its row count and inserts the rows numbered in array order, plus shared group
 * payloads. Sequences of one device therefore commit in increasing order. Rows of a device that
 * no longer exists are skipped. A left-out send's rows still count in the numbering, so the
 * device's sequence skips their numbers (readers read `seq > cursor` and tolerate gaps).
 * Concurrent batches to shared devices serialize on the device locks; a deadlock (40P01) can still
 * occur when concurrent batches claim two or more of the same idempotency keys in different orders
 * (retries racing their originals), and is left to the caller to retry.
 */
export async function commitQueueBatch(db: Kysely<Database>, batch: QueueBatch): Promise<QueueBatchResult> {
  const counts = new Map<string, { a: string; d: number; n: number }>();
  const ord: number[] = [];
  for (const r of batch.rows) {
    const k = `${r.account_id}/${r.device_id}`;
    const c = counts.get(k);
    if (c) c.n += 1;
    else counts.set(k, { a: r.account_id, d: r.device_id, n: 1 });
    ord.push((c ?? counts.get(k))?.n ?? 1);
  }
  const inc = [...counts.values()];
  const { sendLog: sl, rows, payloads } = batch;
  const body = packContents(rows.map((r) => r.content));
  const result = await sql<{
    kind: string;
    account_id: string | null;
    device_id: number | null;
    seq: number | null;
    app: number | null;
    message_id: string;
  }>`/* sb:prepare queue_commit */
    WITH sl AS (
      INSERT INTO send_log (sender_account_id, sender_device_id, client_message_id, app, message_id, server_timestamp_ms)
      SELECT * FROM unnest(
        ${sl.map((e) => e.senderAccountId)}::uuid[], ${sl.map((e) => e.senderDeviceId)}::int[],
        ${sl.map((e) => e.clientMessageId)}::text[], ${sl.map((e) => e.app)}::smallint[],
        ${sl.map((e) => e.messageId)}::uuid[], ${sl.map((e) => e.serverTimestampMs)}::bigint[])
        AS k(a, d, c, app, m, ts)
      -- Key order, so two batches racing on the same keys wait instead of deadlocking.
      ORDER BY a, d, c
      ON CONFLICT DO NOTHING
      RETURNING message_id
    ),
    c AS (
      SELECT * FROM unnest(${inc.map((c) => c.a)}::uuid[], ${inc.map((c) => c.d)}::int[], ${inc.map((c) => c.n)}::int[]) AS c(a, dv, n)
    ),
    lk AS (
      SELECT d.account_id, d.device_id FROM devices d JOIN c ON d.account_id = c.a AND d.device_id = c.dv
      ORDER BY d.account_id, d.device_id
      FOR UPDATE OF d
    ),
    up AS (
      UPDATE devices d SET queue_seq = d.queue_seq + c.n
      FROM c
      WHERE d.account_id = c.a AND d.device_id = c.dv AND (SELECT count(*) FROM lk) >= 0
      RETURNING d.account_id, d.device_id, d.queue_seq - c.n AS base, d.app
    ),
    pl AS (
      INSERT INTO group_payloads (message_id, app, content)
      SELECT p.m, p.app, p.content
      FROM unnest(${payloads.map((p) => p.messageId)}::uuid[], ${payloads.map((p) => p.app)}::smallint[],
                  ${payloads.map((p) => buf(p.content))}::bytea[]) AS p(m, app, content)
      WHERE p.m IN (SELECT message_id FROM sl)
      RETURNING message_id
    ),
    ins AS (
      INSERT INTO queued_messages (account_id, device_id, seq, message_id, app, type, source_account_id, source_device_id,
        source_app, source_provider_id, source_registration_id, client_message_id, client_timestamp_ms, server_timestamp_ms,
        expires_at_ms, flags, group_id, report_tag, content, payload_id)
      SELECT r.a, r.dv, up.base + r.ord, r.m, up.app, r.type, r.sa, r.sd, r.sapp, r.sp, r.sr, r.cm, r.ct, r.st, r.ex, r.fl,
             r.g, r.rt, CASE WHEN r.blen < 0 THEN NULL ELSE substring(${body.blob}::bytea FROM r.boff + 1 FOR r.blen) END,
             r.pid
      FROM unnest(
        ${rows.map((r) => r.account_id)}::uuid[], ${rows.map((r) => r.device_id)}::int[], ${ord}::int[],
        ${rows.map((r) => r.message_id)}::uuid[], ${rows.map((r) => r.type)}::smallint[],
        ${rows.map((r) => r.source_account_id)}::uuid[], ${rows.map((r) => r.source_device_id)}::int[],
        ${rows.map((r) => r.source_app)}::smallint[], ${rows.map((r) => r.source_provider_id)}::text[],
        ${rows.map((r) => r.source_registration_id)}::int[], ${rows.map((r) => r.client_message_id)}::text[],
        ${rows.map((r) => r.client_timestamp_ms)}::bigint[], ${rows.map((r) => r.server_timestamp_ms)}::bigint[],
        ${rows.map((r) => r.expires_at_ms)}::bigint[], ${rows.map((r) => r.flags)}::smallint[],
        ${rows.map((r) => r.group_id)}::uuid[], ${rows.map((r) => buf(r.report_tag))}::bytea[],
        ${body.offsets}::int[], ${body.lengths}::int[], ${rows.map((r) => r.payload_id)}::uuid[],
        ${batch.logged}::bool[])
        AS r(a, dv, ord, m, type, sa, sd, sapp, sp, sr, cm, ct, st, ex, fl, g, rt, boff, blen, pid, logged)
      JOIN up ON up.account_id = r.a AND up.device_id = r.dv
      WHERE NOT r.logged OR r.m IN (SELECT message_id FROM sl)
    )
    -- Not a row per inserted row: each device's base and app, and the keys claimed, from which
    -- the rows' sequences follow (the INSERT runs to completion without being read).
    SELECT 'u' AS kind, account_id, device_id, base AS seq, app, NULL::uuid AS message_id FROM up
    UNION ALL
    SELECT 's', NULL, NULL, NULL, NULL, message_id FROM sl
  `.execute(db);
  const out: QueueBatchResult = { logged: new Set(), queued: new Map() };
  const bases = new Map<string, { base: number; app: number }>();
  for (const r of result.rows) {
    if (r.kind === "s") out.logged.add(r.message_id);
    else bases.set(`${r.account_id}/${r.device_id}`, { base: Number(r.seq), app: Number(r.app) });
  }
  // Exactly the rows the INSERT wrote: of an existing device, and of a send whose key this batch
  // claimed (or of no send), numbered base + their order among the device's rows.
  rows.forEach((r, i) => {
    const device = bases.get(`${r.account_id}/${r.device_id}`);
    if (device === undefined || (batch.logged[i] === true && !out.logged.has(r.message_id))) return;
    out.queued.set(queuedKey(r), {
      seq: device.base + (ord[i] as number),
      app: device.app,
    });
  });
  return out;
}
