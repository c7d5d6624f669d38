import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import type { ServiceImpl } from "@switchboard/grpc";
import type { GroupService } from "@switchboard/proto";
import { type GroupSchema } from "@switchboard/proto";
import {
  findAccountsByIds,
  findGroup,
  insertGroup,
  listDevices,
  updateGroupMembers,
  type Database,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Authenticator } from "../auth/principal.js";
import { invalid, requireUuid } from "../domain/limits.js";
import { accountToProto } from "./mapping.js";

/** The GroupService handlers: membership only; group metadata stays end-to-end encrypted. */
export function createGroupService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  maxMembers: number;
}): ServiceImpl<typeof GroupService> {
  const { db, auth } = deps;

  async function memberAccounts(ids: readonly string[], field: string) {
    const unique = [...new Set(ids.map((id, i) => requireUuid(id, `${field}[${i}]`)))];
    const rows = await findAccountsByIds(db, unique);
    if (rows.length !== unique.length) {
      const found = new Set(rows.map((r) => r.id));
      const missing = unique.filter((id) => !found.has(id));
      throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `unknown accounts: ${missing.join(", ")}`);
    }
    return rows;
  }

  async function groupToProto(groupId: string): Promise<MessageInitShape<typeof GroupSchema>> {
    const g = await findGroup(db, groupId);
    if (!g) throw new AppError(Code.NotFound, "GROUP_NOT_FOUND", `group ${groupId} not found`);
    const accounts = await findAccountsByIds(db, g.memberAccountIds);
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
      );
      if (members.length > deps.maxMembers)
        throw invalid("TOO_MANY_MEMBERS", `a group may have at most ${deps.maxMembers} members`);
      const id = randomUUID();
      await insertGroup(db, {
        id,
        creatorAccountId: requester.accountId,
        app: requester.app,
        members: members.map((m) => ({ accountId: m.id, app: m.app })),
      });
      ctx.log.info({ groupId: id, members: members.length }, "group created");
      return { group: await groupToProto(id) };
    },

    async addGroupMembers(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const groupId = requireUuid(req.groupId, "group_id");
      const g = await requireMember(groupId, requester.accountId);
      const add = await memberAccounts(req.accountIds, "account_ids");
      const total = new Set([...g.memberAccountIds, ...add.map((a) => a.id)]).size;
      if (total > deps.maxMembers)
        throw invalid("TOO_MANY_MEMBERS", `a group may have at most ${deps.maxMembers} members`);
      await updateGroupMembers(
        db,
        groupId,
        add.map((a) => ({ accountId: a.id, app: a.app })),
        [],
      );
      return { group: await groupToProto(groupId) };
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
      return { group: await groupToProto(groupId) };
    },

    async getGroup(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const groupId = requireUuid(req.groupId, "group_id");
      await requireMember(groupId, requester.accountId);
      return { group: await groupToProto(groupId) };
    },
  };
}
