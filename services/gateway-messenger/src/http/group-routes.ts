// Group threads: members of any app, one sender-key ciphertext per message.
import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import type { Group } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { groupSendFromJson, groupToJson, type SendGroupMessageJson } from "../domain/translate.js";
import { recipientFromJson, recipientFromPath, type RecipientJson } from "../domain/users.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { ProblemError } from "./problem.js";
import {
  MAX_CIPHERTEXT_B64,
  b64,
  messageOptions,
  problems,
  sendOutcomeFields,
  uuidSchema,
} from "./schemas.js";

const groupParams = {
  type: "object",
  required: ["id"],
  properties: { id: uuidSchema },
} as const;

const membersBody = {
  type: "object",
  required: ["members"],
  properties: { members: { type: "array", maxItems: 1000, items: { $ref: "Recipient#" } } },
  additionalProperties: false,
} as const;

/** POST /v1/groups, GET /v1/groups/{id}, member changes, POST /v1/groups/{id}/messages. */
export async function groupRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const requireAuth = deps.auth.hook();
  const security = [{ bearerAuth: [] }];

  const render = async (group: Group | undefined) => {
    if (group === undefined)
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "response without a group");
    for (const m of group.members) deps.directory.remember(m.account);
    const creatorIsMember = group.members.some((m) => m.account?.id === group.creatorAccountId);
    return groupToJson(
      group,
      creatorIsMember ? undefined : await deps.directory.userOf(group.creatorAccountId),
    );
  };

  const resolveAll = async (members: RecipientJson[]) => {
    const ids: string[] = [];
    for (const m of members) ids.push(await deps.directory.require(recipientFromJson(m)));
    return ids;
  };

  app.post<{ Body: { members: RecipientJson[] } }>(
    "/v1/groups",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["groups"],
        summary: "Create a group thread",
        description:
          "The caller's user plus `members` (users of any app). At most MAX_GROUP_MEMBERS members.",
        security,
        body: membersBody,
        response: { 201: { $ref: "Group#" }, ...problems(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      const me = principalOf(request);
      const memberAccountIds = await resolveAll(request.body.members);
      const r = await deps.link.groups.createGroup({ requester: me, memberAccountIds }, CALL);
      return reply.code(201).send(await render(r.group));
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/groups/:id",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["groups"],
        summary: "Read a group thread with its members' devices",
        security,
        params: groupParams,
        response: { 200: { $ref: "Group#" }, ...problems(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.groups.getGroup({ requester: me, groupId: request.params.id }, CALL);
      return render(r.group);
    },
  );

  app.post<{ Params: { id: string }; Body: { members: RecipientJson[] } }>(
    "/v1/groups/:id/members",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["groups"],
        summary: "Add members",
        description: "Only members may add; adding a member twice is a no-op.",
        security,
        params: groupParams,
        body: membersBody,
        response: { 200: { $ref: "Group#" }, ...problems(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const accountIds = await resolveAll(request.body.members);
      const r = await deps.link.groups.addGroupMembers(
        { requester: me, groupId: request.params.id, accountIds },
        CALL,
      );
      return render(r.group);
    },
  );

  app.delete<{ Params: { id: string; user: string } }>(
    "/v1/groups/:id/members/:user",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["groups"],
        summary: "Remove a member",
        description:
          "Members may remove themselves; the creator may remove anyone. {user} is written as in GET /v1/users/{user}.",
        security,
        params: {
          type: "object",
          required: ["id", "user"],
          properties: { id: uuidSchema, user: { type: "string", maxLength: 128 } },
        },
        response: { 200: { $ref: "Group#" }, ...problems(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const accountId = await deps.directory.require(recipientFromPath(request.params.user));
      const r = await deps.link.groups.removeGroupMembers(
        { requester: me, groupId: request.params.id, accountIds: [accountId] },
        CALL,
      );
      return render(r.group);
    },
  );

  app.post<{ Params: { id: string }; Body: SendGroupMessageJson }>(
    "/v1/groups/:id/messages",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["groups", "messages"],
        summary: "Send a sender-key message to a group thread",
        description:
          "One sender-key ciphertext, fanned out to every member device except the sending one. When " +
          "expected_recipients is given and differs from the members' current devices the send fails 409 " +
          "DEVICES_CHANGED with an `accounts` list; a non-member gets 403 NOT_A_MEMBER.",
        security,
        params: groupParams,
        body: {
          type: "object",
          required: ["message"],
          properties: {
            notification_type: { type: "string", enum: ["REGULAR", "NO_PUSH"] },
            sender_action: { type: "string", enum: ["typing_on", "typing_off"] },
            message: {
              type: "object",
              required: ["body"],
              properties: { ...messageOptions, body: b64(MAX_CIPHERTEXT_B64, "sender-key ciphertext") },
              additionalProperties: false,
            },
            expected_recipients: {
              type: "array",
              maxItems: 1000,
              items: {
                type: "object",
                required: ["user", "devices"],
                properties: {
                  user: { $ref: "Recipient#" },
                  devices: {
                    type: "array",
                    maxItems: 100,
                    items: {
                      type: "object",
                      required: ["device_id", "registration_id"],
                      properties: {
                        device_id: { type: "integer", minimum: 1 },
                        registration_id: { type: "integer", minimum: 0, maximum: 16380 },
                      },
                      additionalProperties: false,
                    },
                  },
                },
                additionalProperties: false,
              },
            },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: "object",
            required: ["group_id", "message_id", "mid", "timestamp", "duplicate"],
            properties: { group_id: uuidSchema, ...sendOutcomeFields },
          },
          ...problems(400, 401, 403, 404, 409, 429, 503, 504),
        },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const body = request.body;
      const expectedAccountIds = await resolveAll((body.expected_recipients ?? []).map((r) => r.user));
      const req = groupSendFromJson(body, {
        sender: { accountId: me.accountId, deviceId: me.deviceId },
        groupId: request.params.id,
        expectedAccountIds,
        defaults: { mid: randomUUID(), timestampMs: Date.now() },
      });
      const r = (await deps.link.sendGroup(req)).result;
      switch (r.case) {
        case "sent":
          return {
            group_id: request.params.id,
            message_id: r.value.messageId,
            mid: req.clientMessageId,
            timestamp: Number(r.value.serverTimestampMs),
            duplicate: r.value.duplicate,
          };
        case "mismatchedDevices": {
          const accounts = new Map<
            string,
            { account_id: string; missing: number[]; extra: number[]; stale: number[] }
          >();
          const entry = (accountId: string) => {
            let e = accounts.get(accountId);
            if (e === undefined) {
              e = { account_id: accountId, missing: [], extra: [], stale: [] };
              accounts.set(accountId, e);
            }
            return e;
          };
          for (const m of r.value.mismatched) {
            entry(m.accountId).missing.push(...m.missingDevices);
            entry(m.accountId).extra.push(...m.extraDevices);
          }
          for (const s of r.value.stale) entry(s.accountId).stale.push(...s.staleDevices);
          throw new ProblemError(
            Code.Aborted,
            "DEVICES_CHANGED",
            "member devices differ from expected_recipients: distribute the sender key to missing and stale devices and retry",
            { accounts: [...accounts.values()] },
          );
        }
        case "notAMember":
          throw new AppError(
            Code.PermissionDenied,
            "NOT_A_MEMBER",
            "the group does not exist or you are not a member",
          );
        default:
          throw new AppError(Code.Internal, "INVALID_RESPONSE", "send returned no outcome");
      }
    },
  );
}
