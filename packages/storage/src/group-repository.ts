import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, GroupRow } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A group with its member account ids (sorted). */
export interface GroupWithMembers {
  group: GroupRow;
  memberAccountIds: string[];
}

/** Creates a group with members (each stored with its own account's app). */
export async function insertGroup(
  db: Kysely<Database>,
  g: {
    id: string;
    creatorAccountId: string;
    app: number;
    members: ReadonlyArray<{ accountId: string; app: number }>;
  },
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto("groups")
      .values({ id: g.id, creator_account_id: g.creatorAccountId, app: g.app })
      .execute();
    await trx
      .insertInto("group_members")
      .values(g.members.map((m) => ({ group_id: g.id, account_id: m.accountId, app: m.app })))
      .onConflict((oc) => oc.doNothing())
      .execute();
  });
}

/** The group and its members, or undefined. */
export async function findGroup(db: Db, groupId: string): Promise<GroupWithMembers | undefined> {
  const group = await db.selectFrom("groups").selectAll().where("id", "=", groupId).executeTakeFirst();
  if (!group) return undefined;
  const members = await db
    .selectFrom("group_members")
    .select("account_id")
    .where("group_id", "=", groupId)
    .orderBy("account_id")
    .execute();
  return { group, memberAccountIds: members.map((m) => m.account_id) };
}

/** Member account ids of a group (empty if it does not exist). */
export async function listGroupMembers(db: Db, groupId: string): Promise<string[]> {
  const rows = await db
    .selectFrom("group_members")
    .select("account_id")
    .where("group_id", "=", groupId)
    .execute();
  return rows.map((r) => r.account_id);
}

/**
 * Adds and removes members in one transaction and bumps the group's revision when anything
 * changed. Returns the new revision.
 */
export async function updateGroupMembers(
  db: Kysely<Database>,
  groupId: string,
  add: ReadonlyArray<{ accountId: string; app: number }>,
  remove: readonly string[],
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    let changed = 0;
    if (add.length > 0) {
      const r = await trx
        .insertInto("group_members")
        .values(add.map((m) => ({ group_id: groupId, account_id: m.accountId, app: m.app })))
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst();
      changed += Number(r.numInsertedOrUpdatedRows ?? 0);
    }
    if (remove.length > 0) {
      const r = await trx
        .deleteFrom("group_members")
        .where("group_id", "=", groupId)
        .where("account_id", "in", [...remove])
        .executeTakeFirst();
      changed += Number(r.numDeletedRows);
    }
    const g = await sql<{ revision: number }>`
      UPDATE groups SET revision = revision + ${changed > 0 ? 1 : 0} WHERE id = ${groupId} RETURNING revision
    `.execute(trx);
    return g.rows[0]?.revision ?? 0;
  });
}
