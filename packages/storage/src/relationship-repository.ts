import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";
import type { QueuedMessage } from "./message-repository.js";

type Db = Kysely<Database> | Transaction<Database>;

/** `relationships.state`: the owner accepted the peer (or messaged it first). */
export const RELATIONSHIP_ACCEPTED = 1;
/** `relationships.state`: the owner blocked the peer. */
export const RELATIONSHIP_BLOCKED = 2;

/** `accounts.requests_policy`: unset (deliver marked for adults, hold for minors). */
export const REQUESTS_POLICY_DEFAULT = 0;
/** `accounts.requests_policy`: hold requests until accepted. */
export const REQUESTS_POLICY_HOLD = 1;
/** `accounts.requests_policy`: deliver requests at once, marked. */
export const REQUESTS_POLICY_DELIVER_MARKED = 2;

/** Bit of `queued_messages.flags`: held as a message request (never streamed until accepted). */
export const QUEUE_FLAG_HELD = 16;
/** Bit of `queued_messages.flags`: sent by an account the recipient had no relationship with. */
export const QUEUE_FLAG_REQUEST = 32;

/** What the send path needs to know about an account. */
export interface AccountPolicy {
  minor: boolean;
  requestsPolicy: number;
}

/** The relationship facts of one send batch, from {@link readSendPolicies}. */
export interface SendPolicies {
  /** `${owner}/${peer}` → state, for the pairs asked about that have a row. */
  relationships: Map<string, number>;
  /** Account id → flags, for the accounts asked about that exist. */
  accounts: Map<string, AccountPolicy>;
}

/** The key of a relationship in {@link SendPolicies.relationships}. */
export const relationshipKey = (owner: string, peer: string): string => `${owner}/${peer}`;

/**
 * ONE round trip for a send batch: the relationship rows of the given (owner, peer) pairs and
 * the minor flag and requests policy of the given accounts.
 */
export async function readSendPolicies(
  db: Db,
  pairs: ReadonlyArray<{ owner: string; peer: string }>,
  accountIds: readonly string[],
): Promise<SendPolicies> {
  const out: SendPolicies = { relationships: new Map(), accounts: new Map() };
  if (pairs.length === 0 && accountIds.length === 0) return out;
  // Prepared (hot: once per commit batch); LATERAL … LIMIT 1 keeps one primary-key probe per pair
  // and account in the generic plan.
  const r = await sql<{
    kind: string;
    a: string;
    b: string | null;
    state: number;
    minor: boolean | null;
  }>`/* sb:prepare send_policies */
    SELECT 'r' AS kind, k.o AS a, k.p AS b, r.state::int AS state, NULL::bool AS minor
    FROM unnest(${pairs.map((p) => p.owner)}::uuid[], ${pairs.map((p) => p.peer)}::uuid[]) AS k(o, p)
    JOIN LATERAL (
      SELECT state FROM relationships WHERE owner_account_id = k.o AND peer_account_id = k.p LIMIT 1
    ) r ON true
    UNION ALL
    SELECT 'a', x.id, NULL, x.requests_policy::int, x.minor
    FROM unnest(${[...accountIds]}::uuid[]) AS u(id)
    JOIN LATERAL (SELECT id, requests_policy, minor FROM accounts WHERE id = u.id LIMIT 1) x ON true
  `.execute(db);
  for (const row of r.rows) {
    if (row.kind === "r") out.relationships.set(relationshipKey(row.a, row.b ?? ""), row.state);
    else out.accounts.set(row.a, { minor: row.minor === true, requestsPolicy: row.state });
  }
  return out;
}

/**
 * Records ACCEPTED relationships (`owner` accepts `peer`) where none exists yet; an existing row
 * (accepted or blocked) is left alone. `app` is the owner's app.
 */
export async function insertAcceptedRelationships(
  db: Db,
  rows: ReadonlyArray<{ owner: string; peer: string; app: number }>,
): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    INSERT INTO relationships (owner_account_id, peer_account_id, app, state)
    SELECT k.o, k.p, k.app, ${RELATIONSHIP_ACCEPTED}
    FROM unnest(${rows.map((r) => r.owner)}::uuid[], ${rows.map((r) => r.peer)}::uuid[], ${rows.map((r) => r.app)}::smallint[])
      AS k(o, p, app)
    ORDER BY k.o, k.p
    ON CONFLICT DO NOTHING
  `.execute(db);
}

/** Sets the relationship of `owner` to `peer` (insert or overwrite). */
export async function setRelationship(
  db: Db,
  r: { owner: string; peer: string; app: number; state: number },
): Promise<void> {
  await db
    .insertInto("relationships")
    .values({ owner_account_id: r.owner, peer_account_id: r.peer, app: r.app, state: r.state })
    .onConflict((oc) =>
      oc
        .columns(["owner_account_id", "peer_account_id"])
        .doUpdateSet({ state: r.state, updated_at: new Date() }),
    )
    .execute();
}

/** Deletes the relationship of `owner` to `peer` if it is in `state`; true when one was deleted. */
export async function deleteRelationship(
  db: Db,
  owner: string,
  peer: string,
  state: number,
): Promise<boolean> {
  const r = await db
    .deleteFrom("relationships")
    .where("owner_account_id", "=", owner)
    .where("peer_account_id", "=", peer)
    .where("state", "=", state)
    .executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** The relationship state of `owner` to `peer`, or undefined. */
export async function findRelationship(db: Db, owner: string, peer: string): Promise<number | undefined> {
  const r = await db
    .selectFrom("relationships")
    .select("state")
    .where("owner_account_id", "=", owner)
    .where("peer_account_id", "=", peer)
    .executeTakeFirst();
  return r?.state;
}

/** Sets an account's requests policy; false when the account does not exist. */
export async function setRequestsPolicy(db: Db, accountId: string, policy: number): Promise<boolean> {
  const r = await db
    .updateTable("accounts")
    .set({ requests_policy: policy })
    .where("id", "=", accountId)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Sets the minor flag and requests policy of an account (registration). */
export async function setAccountSafety(
  db: Db,
  accountId: string,
  s: { minor: boolean; requestsPolicy: number },
): Promise<void> {
  await db
    .updateTable("accounts")
    .set({ minor: s.minor, requests_policy: s.requestsPolicy })
    .where("id", "=", accountId)
    .execute();
}

/** One sender's held messages for a device, as {@link listHeldRequests} returns them. */
export interface HeldRequest {
  peerAccountId: string;
  messageCount: number;
  firstReceivedAtMs: number;
  /** The device's held messages of this sender, oldest first (at most `perPeer`). */
  messages: QueuedMessage[];
}

/**
 * The held (request) messages queued for one device, grouped by sender, oldest sender first:
 * at most `maxPeers` senders and `perPeer` messages each. Expired rows are left out.
 */
export async function listHeldRequests(
  db: Db,
  device: { accountId: string; deviceId: number },
  nowMs: number,
  maxPeers: number,
  perPeer: number,
): Promise<HeldRequest[]> {
  const r = await sql<QueuedMessage & { n: number; first_ms: number }>`
    WITH held AS (
      SELECT q.*, count(*) OVER w AS n, min(q.server_timestamp_ms) OVER w AS first_ms,
             row_number() OVER (PARTITION BY q.source_account_id ORDER BY q.seq) AS rn
      FROM queued_messages q
      WHERE q.account_id = ${device.accountId} AND q.device_id = ${device.deviceId}
        AND (q.flags & ${QUEUE_FLAG_HELD}) <> 0 AND q.expires_at_ms > ${nowMs}
        AND q.source_account_id IS NOT NULL
      WINDOW w AS (PARTITION BY q.source_account_id)
    ),
    peers AS (
      SELECT source_account_id FROM held GROUP BY source_account_id ORDER BY min(first_ms), source_account_id
      LIMIT ${maxPeers}
    )
    SELECT h.account_id, h.device_id, h.seq, h.message_id, h.app, h.type, h.source_account_id, h.source_device_id,
           h.source_app, h.source_provider_id, h.source_registration_id, h.client_message_id, h.client_timestamp_ms,
           h.server_timestamp_ms, h.expires_at_ms, h.flags, h.group_id, h.report_tag,
           COALESCE(h.content, p.content) AS content, h.n::int AS n, h.first_ms
    FROM held h
    JOIN peers USING (source_account_id)
    LEFT JOIN group_payloads p ON p.message_id = h.payload_id
    WHERE h.rn <= ${perPeer}
    ORDER BY h.first_ms, h.source_account_id, h.seq
  `.execute(db);
  const out = new Map<string, HeldRequest>();
  for (const row of r.rows) {
    const peer = row.source_account_id ?? "";
    let h = out.get(peer);
    if (!h) {
      h = { peerAccountId: peer, messageCount: row.n, firstReceivedAtMs: Number(row.first_ms), messages: [] };
      out.set(peer, h);
    }
    const { n: _n, first_ms: _f, ...message } = row;
    h.messages.push({
      ...message,
      seq: Number(message.seq),
      client_timestamp_ms: Number(message.client_timestamp_ms),
      server_timestamp_ms: Number(message.server_timestamp_ms),
      expires_at_ms: Number(message.expires_at_ms),
    });
  }
  return [...out.values()];
}

/**
 * Releases every device's held messages of `peer` in `owner`'s queues in ONE statement: each
 * row is re-queued at the end of its device queue (new sequence numbers, original order) with
 * the held bit cleared, so streams whose cursor passed the old position still deliver it.
 * Returns the released rows with their new sequence numbers (for wake-ups).
 */
export async function releaseHeldMessages(
  db: Kysely<Database>,
  owner: string,
  peer: string,
): Promise<QueuedMessage[]> {
  return db.transaction().execute(async (trx) => {
    const held = await sql<{ device_id: number; n: number }>`
      SELECT device_id, count(*)::int AS n FROM queued_messages
      WHERE account_id = ${owner} AND source_account_id = ${peer} AND (flags & ${QUEUE_FLAG_HELD}) <> 0
      GROUP BY device_id ORDER BY device_id
    `.execute(trx);
    if (held.rows.length === 0) return [];
    const r = await sql<QueuedMessage>`
      WITH lk AS (
        SELECT d.account_id, d.device_id FROM devices d
        WHERE d.account_id = ${owner} AND d.device_id = ANY(${held.rows.map((h) => h.device_id)}::int[])
        ORDER BY d.device_id
        FOR UPDATE OF d
      ),
      old AS (
        DELETE FROM queued_messages q
        WHERE q.account_id = ${owner} AND q.source_account_id = ${peer} AND (q.flags & ${QUEUE_FLAG_HELD}) <> 0
          AND (SELECT count(*) FROM lk) >= 0
        RETURNING q.*
      ),
      numbered AS (
        SELECT old.*, row_number() OVER (PARTITION BY old.device_id ORDER BY old.seq) AS ord,
               count(*) OVER (PARTITION BY old.device_id) AS n
        FROM old
      ),
      up AS (
        UPDATE devices d SET queue_seq = d.queue_seq + c.n
        FROM (SELECT device_id, max(n) AS n FROM numbered GROUP BY device_id) c
        WHERE d.account_id = ${owner} AND d.device_id = c.device_id
        RETURNING d.device_id, d.queue_seq - c.n AS base
      )
      INSERT INTO queued_messages (account_id, device_id, seq, message_id, app, type, source_account_id, source_device_id,
        source_app, source_provider_id, source_registration_id, client_message_id, client_timestamp_ms, server_timestamp_ms,
        expires_at_ms, flags, group_id, report_tag, content, payload_id)
      SELECT n.account_id, n.device_id, up.base + n.ord, n.message_id, n.app, n.type, n.source_account_id,
             n.source_device_id, n.source_app, n.source_provider_id, n.source_registration_id, n.client_message_id,
             n.client_timestamp_ms, n.server_timestamp_ms, n.expires_at_ms, n.flags::int & ${~QUEUE_FLAG_HELD}::int, n.group_id,
             n.report_tag, n.content, n.payload_id
      FROM numbered n JOIN up ON up.device_id = n.device_id
      RETURNING account_id, device_id, seq, message_id, app, type, source_account_id, source_device_id, source_app,
                source_provider_id, source_registration_id, client_message_id, client_timestamp_ms, server_timestamp_ms,
                expires_at_ms, flags, group_id, report_tag, content
    `.execute(trx);
    return r.rows
      .map((m) => ({
        ...m,
        seq: Number(m.seq),
        client_timestamp_ms: Number(m.client_timestamp_ms),
        server_timestamp_ms: Number(m.server_timestamp_ms),
        expires_at_ms: Number(m.expires_at_ms),
      }))
      .sort((a, b) => a.device_id - b.device_id || a.seq - b.seq);
  });
}

/** Deletes every held message of `peer` in `owner`'s queues; returns how many rows. */
export async function deleteHeldMessages(db: Db, owner: string, peer: string): Promise<number> {
  const r = await sql`
    DELETE FROM queued_messages
    WHERE account_id = ${owner} AND source_account_id = ${peer} AND (flags & ${QUEUE_FLAG_HELD}) <> 0
  `.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

/** A held group invitation. */
export interface GroupInvitation {
  groupId: string;
  inviterAccountId: string;
  createdAtMs: number;
}

/** Holds group invitations (an existing one for the same group and invitee is kept). */
export async function insertGroupInvitations(
  db: Db,
  rows: ReadonlyArray<{ groupId: string; accountId: string; app: number; inviterAccountId: string }>,
): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto("group_invitations")
    .values(
      rows.map((r) => ({
        group_id: r.groupId,
        account_id: r.accountId,
        app: r.app,
        inviter_account_id: r.inviterAccountId,
      })),
    )
    .onConflict((oc) => oc.doNothing())
    .execute();
}

/** An account's held group invitations, oldest first (at most `limit`). */
export async function listGroupInvitations(
  db: Db,
  accountId: string,
  limit: number,
): Promise<GroupInvitation[]> {
  const rows = await db
    .selectFrom("group_invitations")
    .select(["group_id", "inviter_account_id", "created_at"])
    .where("account_id", "=", accountId)
    .orderBy("created_at")
    .limit(limit)
    .execute();
  return rows.map((r) => ({
    groupId: r.group_id,
    inviterAccountId: r.inviter_account_id,
    createdAtMs: r.created_at.getTime(),
  }));
}

/**
 * Removes group invitations of `accountId`: one group's (when `groupId` is given) or every one
 * from `inviterAccountId`. Returns the removed invitations.
 */
export async function deleteGroupInvitations(
  db: Db,
  accountId: string,
  by: { groupId: string } | { inviterAccountId: string },
): Promise<GroupInvitation[]> {
  let q = db.deleteFrom("group_invitations").where("account_id", "=", accountId);
  q =
    "groupId" in by
      ? q.where("group_id", "=", by.groupId)
      : q.where("inviter_account_id", "=", by.inviterAccountId);
  const rows = await q.returning(["group_id", "inviter_account_id", "created_at"]).execute();
  return rows.map((r) => ({
    groupId: r.group_id,
    inviterAccountId: r.inviter_account_id,
    createdAtMs: r.created_at.getTime(),
  }));
}
