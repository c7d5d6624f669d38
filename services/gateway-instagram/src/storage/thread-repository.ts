import type { Kysely } from "kysely";
import type { IgDatabase, IgThreadRow } from "./schema.js";

/** A thread to record in an owner's inbox. */
export interface ThreadEntry {
  ownerAccountId: string;
  threadId: string;
  threadType: "private" | "group";
  peerAccountId: string | null;
  activityAt: Date;
}

/** Adds a thread to an inbox, or moves its last activity forward. */
export async function upsertThread(db: Kysely<IgDatabase>, t: ThreadEntry): Promise<void> {
  await db
    .insertInto("ig_threads")
    .values({
      owner_account_id: t.ownerAccountId,
      thread_id: t.threadId,
      thread_type: t.threadType,
      peer_account_id: t.peerAccountId,
      last_activity_at: t.activityAt,
    })
    .onConflict((oc) =>
      oc.columns(["owner_account_id", "thread_id"]).doUpdateSet((eb) => ({
        last_activity_at: eb.fn("greatest", ["ig_threads.last_activity_at", "excluded.last_activity_at"]),
      })),
    )
    .execute();
}

/** One thread of an owner's inbox, or undefined. */
export async function findThread(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  threadId: string,
): Promise<IgThreadRow | undefined> {
  return db
    .selectFrom("ig_threads")
    .selectAll()
    .where("owner_account_id", "=", ownerAccountId)
    .where("thread_id", "=", threadId)
    .executeTakeFirst();
}

/** An owner's threads, most recently active first, optionally older than `before`. */
export async function listInbox(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  opts: { limit: number; before?: Date },
): Promise<IgThreadRow[]> {
  let q = db.selectFrom("ig_threads").selectAll().where("owner_account_id", "=", ownerAccountId);
  if (opts.before !== undefined) q = q.where("last_activity_at", "<", opts.before);
  return q.orderBy("last_activity_at", "desc").orderBy("thread_id").limit(opts.limit).execute();
}

/** Removes a thread from an owner's inbox (after leaving a group). */
export async function deleteThread(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  threadId: string,
): Promise<void> {
  await db
    .deleteFrom("ig_threads")
    .where("owner_account_id", "=", ownerAccountId)
    .where("thread_id", "=", threadId)
    .execute();
}

/** The owner's group threads (ids), most recently active first. */
export async function listGroupThreadIds(
  db: Kysely<IgDatabase>,
  ownerAccountId: string,
  limit: number,
): Promise<string[]> {
  const rows = await db
    .selectFrom("ig_threads")
    .select("thread_id")
    .where("owner_account_id", "=", ownerAccountId)
    .where("thread_type", "=", "group")
    .orderBy("last_activity_at", "desc")
    .limit(limit)
    .execute();
  return rows.map((r) => r.thread_id);
}
