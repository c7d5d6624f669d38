import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import type { ServiceImpl } from "@switchboard/grpc";
import type { GroupService } from "@switchboard/proto";
import { type App, type GroupSchema } from "@switchboard/proto";
import {
  findAccountsByIds,
  findGroup,
  insertGroupInvitations,
  readSendPolicies,
  insertGroup,
  listDevices,
  updateGroupMembers,
  type Database,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Authenticator } from "../auth/principal.js";
import { findHiddenAccounts } from "../domain/interop-policy.js";
import { invalid, requireUuid } from "../domain/limits.js";
import { decideInvite } from "../domain/relationship-policy.js";
import { accountToProto } from "./mapping.js";

/** The GroupService handlers: membership only; group metadata stays end-to-end encrypted. */
export function createGroupService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  maxMembers: number;
}): ServiceImpl<typeof GroupService> {
  const { db, auth } = deps;

  /**
   * The accounts to add. A third-party requester cannot add accounts of our apps that did not
   * opt in: they fail exactly like unknown accounts (ACCOUNT_NOT_FOUND), revealing nothing.
   */
  async function memberAccounts(ids: readonly string[], field: string, requester: { app: App }) {
    const unique = [...new Set(ids.map((id, i) => requireUuid(id, `${field}[${i}]`)))];
    // Over the group limit whatever exists: refuse before looking thousands of ids up.
    if (unique.length > deps.maxMembers)
      throw invalid("TOO_MANY_MEMBERS", `a group may have at most ${deps.maxMembers} members`);
    const hidden = await findHiddenAccounts(db, requester, unique);
    const rows = (await findAccountsByIds(db, unique)).filter((r) => !hidden.has(r.id));
    if (rows.length !== unique.length) {
      const found = new Set(rows.map((r) => r.id));
      const missing = unique.filter((id) => !found.has(id));
      throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `unknown accounts: ${missing.join(", ")}`);
    }
    return rows;
  }

  /**
   * The group as `viewer` sees it: a third-party viewer does not see members of our apps that
   * did not opt in (they do not receive its messages either; see docs/interop.md).
   */
  async function groupToProto(
    groupId: string,
    viewer: { app: App },
  ): Promise<MessageInitShape<typeof GroupSchema>> {
    const g = await findGroup(db, groupId);
    if (!g) throw new AppError(Code.NotFound, "GROUP_NOT_FOUND", `group ${groupId} not found`);
    const hidden = await findHiddenAccounts(db, viewer, g.memberAccountIds);
    const accounts = (await findAccountsByIds(db, g.memberAccountIds)).filter((a) => !hidden.has(a.id));
    const devices = await listDevices(db, g.memberAccountIds);
    return {
      id: g.group.id,
      creatorAccountId: g.group.creator_account_id,
      revision: BigInt(g.group.revision),
      members: accounts
        .sort((a, b) => (a.id < b.id ? -1 : 1))
        .map((a) =>
          accountToProto(
            a,
            devices.filter((d) => d.accountId === a.id),
          ),
        ),
    };
  }

  /**
   * Splits accounts being added by `inviterId` (message requests, protection of minors): those
   * who accepted the inviter or take strangers' messages are added; those who hold requests (and
   * minors invited by minors) get a held invitation; blocked inviters' and adults' additions of
   * minors are dropped. The inviter sees the same for held and dropped: not a member.
   */
  async function admission<T extends { id: string; app: number }>(inviterId: string, accounts: readonly T[]) {
    const others = accounts.filter((a) => a.id !== inviterId);
    const facts = await readSendPolicies(
      db,
      others.map((a) => ({ owner: a.id, peer: inviterId })),
      [inviterId, ...others.map((a) => a.id)],
    );
    const add: T[] = [];
    const invite: T[] = [];
    for (const a of accounts) {
      const action = decideInvite(facts, inviterId, a.id);
      if (action === "add") add.push(a);
      else if (action === "invite") invite.push(a);
    }
    return { add, invite };
  }

  async function requireMember(groupId: string, accountId: string) {
    const g = await findGroup(db, groupId);
    if (!g || !g.memberAccountIds.includes(accountId)) {
      throw new AppError(Code.NotFound, "GROUP_NOT_FOUND", `group ${groupId} not found or not a member`);
    }
    return g;
  }

  return {
    async createGroup(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const members = await memberAccounts(
        [requester.accountId, ...req.memberAccountIds],
        "member_account_ids",
        requester,
      );
      if (members.length > deps.maxMembers)
        throw invalid("TOO_MANY_MEMBERS", `a group may have at most ${deps.maxMembers} members`);
      const id = randomUUID();
      const admitted = await admission(requester.accountId, members);
      await insertGroup(db, {
        id,
        creatorAccountId: requester.accountId,
        app: requester.app,
        members: admitted.add.map((m) => ({ accountId: m.id, app: m.app })),
      });
      await insertGroupInvitations(
        db,
        admitted.invite.map((m) => ({
          groupId: id,
          accountId: m.id,
          app: m.app,
          inviterAccountId: requester.accountId,
        })),
      );
      ctx.log.info({ groupId: id, members: members.length }, "group created");
      return { group: await groupToProto(id, requester) };
    },

    async addGroupMembers(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const groupId = requireUuid(req.groupId, "group_id");
      const g = await requireMember(groupId, requester.accountId);
      const add = await memberAccounts(req.accountIds, "account_ids", requester);
      const total = new Set([...g.memberAccountIds, ...add.map((a) => a.id)]).size;
      if (total > deps.maxMembers)
        throw invalid("TOO_MANY_MEMBERS", `a group may have at most ${deps.maxMembers} members`);
      const admitted = await admission(
        requester.accountId,
        add.filter((a) => !g.memberAccountIds.includes(a.id)),
      );
      await updateGroupMembers(
        db,
        groupId,
        admitted.add.map((a) => ({ accountId: a.id, app: a.app })),
        [],
      );
      await insertGroupInvitations(
        db,
        admitted.invite.map((a) => ({
          groupId,
          accountId: a.id,
          app: a.app,
          inviterAccountId: requester.accountId,
        })),
      );
      return { group: await groupToProto(groupId, requester) };
    },

    async removeGroupMembers(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const groupId = requireUuid(req.groupId, "group_id");
      const g = await requireMember(groupId, requester.accountId);
      const remove = [...new Set(req.accountIds.map((id, i) => requireUuid(id, `account_ids[${i}]`)))];
      const onlySelf = remove.every((id) => id === requester.accountId);
      if (!onlySelf && g.group.creator_account_id !== requester.accountId) {
        throw new AppError(
          Code.PermissionDenied,
          "NOT_GROUP_CREATOR",
          "only the group's creator may remove other members",
        );
      }
      await updateGroupMembers(db, groupId, [], remove);
      const after = await findGroup(db, groupId);
      if (after && !after.memberAccountIds.includes(requester.accountId)) {
        return {
          group: {
            id: groupId,
            creatorAccountId: after.group.creator_account_id,
            revision: BigInt(after.group.revision),
            members: [],
          },
        };
      }
      return { group: await groupToProto(groupId, requester) };
    },

    async getGroup(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const groupId = requireUuid(req.groupId, "group_id");
      await requireMember(groupId, requester.accountId);
      return { group: await groupToProto(groupId, requester) };
    },
  };
}
