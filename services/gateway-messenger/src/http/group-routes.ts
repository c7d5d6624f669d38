// Group threads: members of any app, one sender-key ciphertext per message.
import { AppError, Code } from "@switchboard/errors";
import type { Group } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { groupToJson, type SendGroupMessageJson } from "../domain/translate.js";
import { recipientFromJson, recipientFromPath, type RecipientJson } from "../domain/users.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { problems, sendGroupMessageBody, sendOutcomeFields, uuidSchema } from "./schemas.js";
import { submitGroupSend } from "./sends.js";

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
        body: sendGroupMessageBody,
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
    async (request) =>
      (await submitGroupSend(deps, principalOf(request), request.params.id, request.body)).result,
  );
}
