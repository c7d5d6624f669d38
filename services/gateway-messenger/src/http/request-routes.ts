// Message requests: messages from users the caller has not accepted, held or marked (depending on
// the caller's requests policy), group invitations, blocks. Backed by the delivery service's
// RequestService (docs/safety.md "Message requests").
import { RequestsPolicy } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { envelopeToEvent } from "../domain/translate.js";
import { recipientFromPath, userFromHandle } from "../domain/users.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { problems, uuidSchema } from "./schemas.js";

const userParams = {
  type: "object",
  required: ["user"],
  properties: {
    user: {
      type: "string",
      maxLength: 128,
      description:
        "written as in GET /v1/users/{user}: 100004, an account UUID, whatsapp:<phone>, instagram:<username>",
    },
  },
} as const;

const groupParams = { type: "object", required: ["id"], properties: { id: uuidSchema } } as const;

const requestSchema = {
  type: "object",
  required: ["sender", "message_count", "first_received_at", "messages"],
  properties: {
    sender: { $ref: "User#" },
    group_id: { ...uuidSchema, description: "set for a group invitation (then `sender` invited you)" },
    message_count: { type: "integer", description: "messages of this sender held for the calling device" },
    first_received_at: { type: "integer", description: "ms since the epoch" },
    messages: {
      type: "array",
      description:
        "the calling device's held messages of this sender, oldest first (at most 50), to decrypt a preview",
      items: { $ref: "StreamMessageEvent#" },
    },
  },
} as const;

const policySchema = {
  type: "object",
  required: ["policy"],
  properties: {
    policy: {
      enum: ["hold", "deliver_marked"],
      description:
        "hold: messages from strangers wait in GET /v1/me/requests until accepted; deliver_marked (the default): they " +
        "arrive at once with message_request: true. Minors always hold.",
    },
  },
  additionalProperties: false,
} as const;

/**
 * GET /v1/me/requests; POST /v1/me/requests/{user}/accept|decline; POST
 * /v1/me/requests/groups/{id}/accept|decline; PUT and DELETE /v1/me/blocks/{user}; PUT
 * /v1/me/settings/requests_policy.
 */
export async function requestRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const requireAuth = deps.auth.hook();
  const security = [{ bearerAuth: [] }];
  const tags = ["requests"];
  const peerOf = (user: string) => deps.directory.require(recipientFromPath(user));

  app.get(
    "/v1/me/requests",
    {
      onRequest: requireAuth,
      schema: {
        tags,
        summary: "List message requests and group invitations",
        security,
        response: {
          200: {
            type: "object",
            required: ["requests"],
            properties: { requests: { type: "array", items: requestSchema } },
          },
          ...problems(401, 503),
        },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.requests.listMessageRequests(
        { device: { accountId: me.accountId, deviceId: me.deviceId } },
        CALL,
      );
      return {
        requests: r.requests.map((q) => {
          const handle = q.peerHandle;
          return {
            sender: handle
              ? userFromHandle(q.peerAccountId, handle)
              : { account_id: q.peerAccountId, app: "unspecified" },
            ...(q.groupId === "" ? {} : { group_id: q.groupId }),
            message_count: q.messageCount,
            first_received_at: Number(q.firstReceivedAtMs),
            messages: q.envelopes.map((e) => envelopeToEvent(e, handle)),
          };
        }),
      };
    },
  );

  for (const action of ["accept", "decline"] as const) {
    app.post<{ Params: { user: string } }>(
      `/v1/me/requests/:user/${action}`,
      {
        onRequest: requireAuth,
        schema: {
          tags,
          summary:
            action === "accept" ? "Accept a user's message request" : "Decline a user's message request",
          description:
            action === "accept"
              ? "Its held messages are then delivered to your devices' streams, in order."
              : "Its held messages are deleted (the sender gets no receipt); a later message is a new request.",
          security,
          params: userParams,
          response: {
            200: {
              type: "object",
              properties: { released: { type: "integer" }, deleted: { type: "integer" } },
            },
            ...problems(400, 401, 404, 503),
          },
        },
      },
      async (request) => {
        const me = principalOf(request);
        const device = { accountId: me.accountId, deviceId: me.deviceId };
        const peerAccountId = await peerOf(request.params.user);
        if (action === "accept") {
          const r = await deps.link.requests.acceptMessageRequest({ device, peerAccountId }, CALL);
          return { released: r.released };
        }
        const r = await deps.link.requests.declineMessageRequest({ device, peerAccountId }, CALL);
        return { deleted: r.deleted };
      },
    );
    app.post<{ Params: { id: string } }>(
      `/v1/me/requests/groups/:id/${action}`,
      {
        onRequest: requireAuth,
        schema: {
          tags,
          summary: action === "accept" ? "Accept a group invitation (join)" : "Decline a group invitation",
          security,
          params: groupParams,
          response: { 204: { type: "null" }, ...problems(400, 401, 404, 503) },
        },
      },
      async (request, reply) => {
        const me = principalOf(request);
        const device = { accountId: me.accountId, deviceId: me.deviceId };
        if (action === "accept")
          await deps.link.requests.acceptMessageRequest({ device, groupId: request.params.id }, CALL);
        else await deps.link.requests.declineMessageRequest({ device, groupId: request.params.id }, CALL);
        return reply.code(204).send();
      },
    );
  }

  app.put<{ Params: { user: string } }>(
    "/v1/me/blocks/:user",
    {
      onRequest: requireAuth,
      schema: {
        tags,
        summary: "Block a user",
        description:
          "Deletes its requests and invitations; its later messages and invitations are dropped while it keeps seeing " +
          "them as sent.",
        security,
        params: userParams,
        response: { 204: { type: "null" }, ...problems(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      const me = principalOf(request);
      const peerAccountId = await peerOf(request.params.user);
      await deps.link.requests.block(
        { device: { accountId: me.accountId, deviceId: me.deviceId }, peerAccountId },
        CALL,
      );
      return reply.code(204).send();
    },
  );

  app.delete<{ Params: { user: string } }>(
    "/v1/me/blocks/:user",
    {
      onRequest: requireAuth,
      schema: {
        tags,
        summary: "Unblock a user",
        security,
        params: userParams,
        response: { 204: { type: "null" }, ...problems(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      const me = principalOf(request);
      const peerAccountId = await peerOf(request.params.user);
      await deps.link.requests.unblock(
        { device: { accountId: me.accountId, deviceId: me.deviceId }, peerAccountId },
        CALL,
      );
      return reply.code(204).send();
    },
  );

  app.put<{ Body: { policy: "hold" | "deliver_marked" } }>(
    "/v1/me/settings/requests_policy",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["settings"],
        summary: "Choose how messages from strangers arrive",
        security,
        body: policySchema,
        response: { 200: policySchema, ...problems(400, 401, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      await deps.link.requests.setRequestsPolicy(
        {
          device: { accountId: me.accountId, deviceId: me.deviceId },
          policy: request.body.policy === "hold" ? RequestsPolicy.HOLD : RequestsPolicy.DELIVER_MARKED,
        },
        CALL,
      );
      return { policy: request.body.policy };
    },
  );
}
