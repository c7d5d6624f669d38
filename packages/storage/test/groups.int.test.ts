import { randomUUID } from "node:crypto";
import { expect, test } from "vitest";
import { findGroup, insertGroup, listGroupMembers, updateGroupMembers } from "../src/index.js";
import { APP_MESSENGER, APP_WHATSAPP, createAccount, describeBackends } from "./backends.js";

describeBackends("group repository", (ctx) => {
  /** Three accounts (the last on another app) and a group of the first two. */
  async function groupOfTwo() {
    const a = await createAccount(ctx.db);
    const b = await createAccount(ctx.db);
    const c = await createAccount(ctx.db, { app: APP_MESSENGER, handle: "987654" });
    const id = randomUUID();
    await insertGroup(ctx.db, {
      id,
      creatorAccountId: a.accountId,
      app: APP_WHATSAPP,
      members: [
        { accountId: a.accountId, app: APP_WHATSAPP },
        { accountId: b.accountId, app: APP_WHATSAPP },
        { accountId: b.accountId, app: APP_WHATSAPP }, // listed twice: stored once
      ],
    });
    return { id, a: a.accountId, b: b.accountId, c: c.accountId };
  }

  test("insertGroup stores the group at revision 1 and findGroup returns it with sorted members", async () => {
    const g = await groupOfTwo();
    const found = await findGroup(ctx.db, g.id);
    expect(found?.group).toEqual({
      id: g.id,
      creator_account_id: g.a,
      app: APP_WHATSAPP,
      revision: 1,
      created_at: expect.any(Date) as Date,
    });
    expect(found?.memberAccountIds).toEqual([g.a, g.b].sort());
    expect(await findGroup(ctx.db, randomUUID())).toBeUndefined();
  });

  test("listGroupMembers lists member ids, none for an unknown group", async () => {
    const g = await groupOfTwo();
    expect((await listGroupMembers(ctx.db, g.id)).sort()).toEqual([g.a, g.b].sort());
    expect(await listGroupMembers(ctx.db, randomUUID())).toEqual([]);
  });

  test("updateGroupMembers adds and removes members and bumps the revision only on a change", async () => {
    const g = await groupOfTwo();
    expect(await updateGroupMembers(ctx.db, g.id, [{ accountId: g.c, app: APP_MESSENGER }], [g.b])).toBe(2);
    expect((await findGroup(ctx.db, g.id))?.memberAccountIds).toEqual([g.a, g.c].sort());
    // Adding a member again and removing a non-member changes nothing.
    expect(await updateGroupMembers(ctx.db, g.id, [{ accountId: g.a, app: APP_WHATSAPP }], [g.b])).toBe(2);
    expect(await updateGroupMembers(ctx.db, g.id, [], [])).toBe(2);
    const members = await ctx.db
      .selectFrom("group_members")
      .select(["account_id", "app"])
      .where("group_id", "=", g.id)
      .execute();
    expect(members).toContainEqual({ account_id: g.c, app: APP_MESSENGER });
    expect((await findGroup(ctx.db, g.id))?.group.revision).toBe(2);
  });

  test("updateGroupMembers returns 0 for an unknown group", async () => {
    expect(await updateGroupMembers(ctx.db, randomUUID(), [], [randomUUID()])).toBe(0);
  });
});
