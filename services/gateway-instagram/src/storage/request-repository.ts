// Message requests: relationships (who accepted whom) and the envelopes held per device.
import { sql, type Kysely } from "kysely";
import type { IgDatabase, IgRequestRow, RelationshipState } from "./schema.js";

/** An owner's state towards a peer, or undefined when they never interacted. */
export async function findRelationshipState(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  peerAccountId: string,
): Promise<RelationshipState | undefined> {
  const row = await db
    .selectFrom("ig_relationships")
    .select("state")
    .where("owner_account_id", "=", ownerAccountId)
    .where("peer_account_id", "=", peerAccountId)
    .executeTakeFirst();
  return row?.state;
}

/** The relationship of an owner for a one-to-one thread id, or undefined. */
export async function findRelationshipByThread(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  threadId: string,
): Promise<{ peerAccountId: string; state: RelationshipState } | undefined> {
  const row = await db
    .selectFrom("ig_relationships")
    .select(["peer_account_id", "state"])
    .where("owner_account_id", "=", ownerAccountId)
    .where("thread_id", "=", threadId)
    .executeTakeFirst();
  return row && { peerAccountId: row.peer_account_id, state: row.state };
}

/** An envelope to hold for one device of the owner. */
export interface HeldEnvelope {
  ownerAccountId: string;
  deviceId: number;
  peerAccountId: string;
  threadId: string;
  serverId: string;
  sequence: number;
  envelope: Uint8Array;
}

/**
 * Holds an envelope as part of a message request, unless the owner has accepted the peer by now.
 * The relationship row is upserted first (a declined peer becomes pending again), which locks it:
 * a concurrent accept either sees this item and releases it, or commits first and this returns
 * `accepted` (deliver live). Holding the same envelope twice is a no-op.
 */
export async function holdEnvelope(db: Kysely<IgDatabase>, h: HeldEnvelope): Promise<"held" | "accepted"> {
  return db.transaction().execute(async (trx) => {
    const rel = await trx
      .insertInto("ig_relationships")
      .values({
        owner_account_id: h.ownerAccountId,
        peer_account_id: h.peerAccountId,
        thread_id: h.threadId,
        state: "pending",
        updated_at: new Date(),
      })
      .onConflict((oc) =>
        oc.columns(["owner_account_id", "peer_account_id"]).doUpdateSet({
          state: sql<RelationshipState>`CASE WHEN ig_relationships.state = 'accepted' THEN 'accepted' ELSE 'pending' END`,
        }),
      )
      .returning("state")
      .executeTakeFirstOrThrow();
    if (rel.state === "accepted") return "accepted";
    await trx
      .insertInto("ig_requests")
      .values({
        owner_account_id: h.ownerAccountId,
        device_id: h.deviceId,
        server_id: h.serverId,
        peer_account_id: h.peerAccountId,
        thread_id: h.threadId,
        state: "held",
        sequence: h.sequence,
        envelope: Buffer.from(h.envelope),
        delivered_at: null,
      })
      .onConflict((oc) => oc.doNothing())
      .execute();
    return "held";
  });
}

/**
 * Marks a peer accepted by the owner and releases the items held from it (to be delivered to each
 * device until acknowledged). Returns the owner's devices that have items to receive now.
 */
export async function acceptPeer(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  peerAccountId: string,
  threadId: string,
): Promise<number[]> {
  return db.transaction().execute(async (trx) => {
    await trx
      .insertInto("ig_relationships")
      .values({
        owner_account_id: ownerAccountId,
        peer_account_id: peerAccountId,
        thread_id: threadId,
        state: "accepted",
        updated_at: new Date(),
      })
      .onConflict((oc) =>
        oc
          .columns(["owner_account_id", "peer_account_id"])
          .doUpdateSet({ state: "accepted", updated_at: new Date() }),
      )
      .execute();
    const released = await trx
      .updateTable("ig_requests")
      .set({ state: "released", delivered_at: null })
      .where("owner_account_id", "=", ownerAccountId)
      .where("peer_account_id", "=", peerAccountId)
      .where("state", "=", "held")
      .returning("device_id")
      .execute();
    return [...new Set(released.map((r) => r.device_id))];
  });
}

/**
 * Declines a pending request: the relationship becomes `declined` and every held item of it is
 * deleted. Returns the number of deleted items, or undefined when the thread has no pending request.
 */
export async function declineRequest(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  threadId: string,
): Promise<{ peerAccountId: string; deletedItems: number } | undefined> {
  return db.transaction().execute(async (trx) => {
    const rel = await trx
      .updateTable("ig_relationships")
      .set({ state: "declined", updated_at: new Date() })
      .where("owner_account_id", "=", ownerAccountId)
      .where("thread_id", "=", threadId)
      .where("state", "=", "pending")
      .returning("peer_account_id")
      .executeTakeFirst();
    if (rel === undefined) return undefined;
    const deleted = await trx
      .deleteFrom("ig_requests")
      .where("owner_account_id", "=", ownerAccountId)
      .where("peer_account_id", "=", rel.peer_account_id)
      .where("state", "=", "held")
      .returning("server_id")
      .execute();
    return {
      peerAccountId: rel.peer_account_id,
      deletedItems: new Set(deleted.map((d) => d.server_id)).size,
    };
  });
}

/** A pending request as listed in the requests folder. */
export interface PendingRequest {
  threadId: string;
  peerAccountId: string;
  itemCount: number;
  firstItemAt: Date;
  lastItemAt: Date;
}

/** The owner's pending requests (threads with held items), most recent first. */
export async function listPendingRequests(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
): Promise<PendingRequest[]> {
  const rows = await db
    .selectFrom("ig_requests")
    .select((eb) => [
      "thread_id",
      "peer_account_id",
      sql<number>`count(DISTINCT server_id)::int`.as("item_count"),
      eb.fn.min("received_at").as("first_item_at"),
      eb.fn.max("received_at").as("last_item_at"),
    ])
    .where("owner_account_id", "=", ownerAccountId)
    .where("state", "=", "held")
    .groupBy(["thread_id", "peer_account_id"])
    .orderBy("last_item_at", "desc")
    .execute();
  return rows.map((r) => ({
    threadId: r.thread_id,
    peerAccountId: r.peer_account_id,
    itemCount: Number(r.item_count),
    firstItemAt: new Date(r.first_item_at),
    lastItemAt: new Date(r.last_item_at),
  }));
}

/** One device's held items of a request thread, in queue order (at most `limit`). */
export async function listHeldItems(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  deviceId: number,
  threadId: string,
  limit: number,
): Promise<IgRequestRow[]> {
  return db
    .selectFrom("ig_requests")
    .selectAll()
    .where("owner_account_id", "=", ownerAccountId)
    .where("device_id", "=", deviceId)
    .where("thread_id", "=", threadId)
    .where("state", "=", "held")
    .orderBy("sequence")
    .limit(limit)
    .execute();
}

/** Released items of one device in queue order after `afterSequence` (`undeliveredOnly`: not yet streamed). */
export async function listReleased(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  deviceId: number,
  opts: { undeliveredOnly: boolean; afterSequence: number; limit: number },
): Promise<IgRequestRow[]> {
  let q = db
    .selectFrom("ig_requests")
    .selectAll()
    .where("owner_account_id", "=", ownerAccountId)
    .where("device_id", "=", deviceId)
    .where("state", "=", "released")
    .where("sequence", ">", opts.afterSequence);
  if (opts.undeliveredOnly) q = q.where("delivered_at", "is", null);
  return q.orderBy("sequence").limit(opts.limit).execute();
}

/** Records that released items were streamed to their device. */
export async function markDelivered(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  deviceId: number,
  serverIds: string[],
): Promise<void> {
  if (serverIds.length === 0) return;
  await db
    .updateTable("ig_requests")
    .set({ delivered_at: new Date() })
    .where("owner_account_id", "=", ownerAccountId)
    .where("device_id", "=", deviceId)
    .where("server_id", "in", serverIds)
    .execute();
}

/** Removes released items a device acknowledged; returns the ids that were removed. */
export async function deleteReleased(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  deviceId: number,
  serverIds: string[],
): Promise<string[]> {
  if (serverIds.length === 0) return [];
  const rows = await db
    .deleteFrom("ig_requests")
    .where("owner_account_id", "=", ownerAccountId)
    .where("device_id", "=", deviceId)
    .where("state", "=", "released")
    .where("server_id", "in", serverIds)
    .returning("server_id")
    .execute();
  return rows.map((r) => r.server_id);
}

/** Devices (of any owner) with released items not yet streamed. */
export async function listDevicesWithUndelivered(
  db: Kysely<IgDatabase>,
  limit: number,
): Promise<{ accountId: string; deviceId: number }[]> {
  const rows = await db
    .selectFrom("ig_requests")
    .select(["owner_account_id", "device_id"])
    .distinct()
    .where("state", "=", "released")
    .where("delivered_at", "is", null)
    .limit(limit)
    .execute();
  return rows.map((r) => ({ accountId: r.owner_account_id, deviceId: r.device_id }));
}

/** Deletes everything held for a removed device. */
export async function deleteDeviceRequests(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  deviceId: number,
): Promise<void> {
  await db
    .deleteFrom("ig_requests")
    .where("owner_account_id", "=", ownerAccountId)
    .where("device_id", "=", deviceId)
    .execute();
}

/** Deletes request items received before `before` (retention); returns how many. */
export async function sweepExpiredRequests(db: Kysely<IgDatabase>, before: Date): Promise<number> {
  const r = await db.deleteFrom("ig_requests").where("received_at", "<", before).executeTakeFirst();
  return Number(r.numDeletedRows);
}
