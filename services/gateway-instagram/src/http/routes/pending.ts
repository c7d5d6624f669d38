// Message requests: first one-to-one messages from users you have not accepted.
import { fromBinary } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import { EnvelopeSchema } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { isDirectThreadId } from "../../domain/thread-id.js";
import { envelopeToItem } from "../../domain/translate.js";
import {
  declineRequest,
  findRelationshipByThread,
  listHeldItems,
  listPendingRequests,
} from "../../storage/request-repository.js";
import type { RouteContext } from "../context.js";
import { bearer, problemResponses, ref, schemaParts } from "../schemas.js";
import { privateThreadJson } from "../views.js";

/** Most held items one GET /v1/direct/pending/{thread_id}/items returns. */
export const MAX_HELD_ITEMS_LISTED = 50;

const threadIdParam = {
  type: "object",
  properties: { thread_id: { type: "string", pattern: "^[0-9]{1,39}$" } },
  required: ["thread_id"],
} as const;

/** Registers the message-request routes. */
export async function pendingRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { db, directory, auth, hub, link } = ctx;

  async function pendingPeer(accountId: string, threadId: string): Promise<string> {
    const rel = isDirectThreadId(threadId)
      ? await findRelationshipByThread(db, accountId, threadId)
      : undefined;
    if (rel?.state !== "pending")
      throw new AppError(Code.NotFound, "REQUEST_NOT_FOUND", `no pending request in thread ${threadId}`);
    return rel.peerAccountId;
  }

  app.get(
    "/v1/direct/pending",
    {
      schema: {
        tags: ["requests"],
        summary: "Your message requests: threads whose first messages wait for you to accept or decline",
        description:
          "Items are taken off the delivery queue into the requests folder as your devices' queues are drained, " +
          "so a request appears once one of your devices has connected to /v1/direct/events since it was sent.",
        security: bearer,
        response: {
          200: {
            type: "object",
            properties: {
              threads: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    thread_id: { type: "string" },
                    thread_type: { type: "string", enum: ["private"] },
                    sender: {
                      type: "object",
                      properties: { account_id: schemaParts.uuid, ref: { type: "string" } },
                      required: ["account_id"],
                    },
                    item_count: {
                      type: "integer",
                      description: "Held items (each counted once across devices).",
                    },
                    first_item_at_ms: schemaParts.millis,
                    last_item_at_ms: schemaParts.millis,
                  },
                  required: [
                    "thread_id",
                    "thread_type",
                    "sender",
                    "item_count",
                    "first_item_at_ms",
                    "last_item_at_ms",
                  ],
                },
              },
            },
            required: ["threads"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const pending = await listPendingRequests(db, me.accountId);
      const threads = await Promise.all(
        pending.map(async (p) => {
          const senderRef = await directory.refOf(p.peerAccountId).catch(() => undefined);
          return {
            thread_id: p.threadId,
            thread_type: "private" as const,
            sender: { account_id: p.peerAccountId, ...(senderRef ? { ref: senderRef } : {}) },
            item_count: p.itemCount,
            first_item_at_ms: p.firstItemAt.getTime(),
            last_item_at_ms: p.lastItemAt.getTime(),
          };
        }),
      );
      return { threads };
    },
  );

  app.get<{ Params: { thread_id: string } }>(
    "/v1/direct/pending/:thread_id/items",
    {
      schema: {
        tags: ["requests"],
        summary: "The calling device's held items of a request, to decrypt a preview or report one",
        description:
          `At most ${MAX_HELD_ITEMS_LISTED}, oldest first, as they would arrive on /v1/direct/events (ciphertext, ` +
          "report_tag, server_franking_tag). Reading neither accepts nor acknowledges anything: after accepting, " +
          "the same items (same server_id) are streamed to each device.",
        security: bearer,
        params: threadIdParam,
        response: {
          200: {
            type: "object",
            properties: { thread_id: { type: "string" }, items: { type: "array", items: ref("ThreadItem") } },
            required: ["thread_id", "items"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      await pendingPeer(me.accountId, request.params.thread_id);
      const rows = await listHeldItems(
        db,
        me.accountId,
        me.deviceId,
        request.params.thread_id,
        MAX_HELD_ITEMS_LISTED,
      );
      return {
        thread_id: request.params.thread_id,
        items: rows.map((row) =>
          envelopeToItem(fromBinary(EnvelopeSchema, new Uint8Array(row.envelope)), (id) =>
            directory.cachedRef(id),
          ),
        ),
      };
    },
  );

  app.post<{ Params: { thread_id: string } }>(
    "/v1/direct/pending/:thread_id/accept",
    {
      schema: {
        tags: ["requests"],
        summary:
          "Accepts a request: the thread moves to the inbox and its items are delivered to your devices",
        description:
          "Held items are streamed to each of your devices (now if connected, else when it connects) until that " +
          "device acknowledges them. Later messages from the sender are delivered live.",
        security: bearer,
        params: threadIdParam,
        response: { 200: ref("Thread"), ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const peer = await pendingPeer(me.accountId, request.params.thread_id);
      // The delivery service records the relationship too (blocks, minors and other apps agree).
      await link.requests.acceptMessageRequest({
        device: { accountId: me.accountId, deviceId: me.deviceId },
        peerAccountId: peer,
      });
      await hub.accept(me.accountId, peer);
      const account = await directory.findAccount(peer);
      if (account === undefined)
        throw new AppError(Code.NotFound, "USER_NOT_FOUND", "the sender no longer exists");
      return privateThreadJson(request.params.thread_id, account, false);
    },
  );

  app.post<{ Params: { thread_id: string } }>(
    "/v1/direct/pending/:thread_id/decline",
    {
      schema: {
        tags: ["requests"],
        summary: "Declines a request: its held items are deleted",
        description: "A later message from the same sender starts a new request.",
        security: bearer,
        params: threadIdParam,
        response: {
          200: {
            type: "object",
            properties: { thread_id: { type: "string" }, deleted_items: { type: "integer" } },
            required: ["thread_id", "deleted_items"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const r = await declineRequest(db, me.accountId, request.params.thread_id);
      if (r === undefined)
        throw new AppError(
          Code.NotFound,
          "REQUEST_NOT_FOUND",
          `no pending request in thread ${request.params.thread_id}`,
        );
      return { thread_id: request.params.thread_id, deleted_items: r.deletedItems };
    },
  );
}

/** Registers block and unblock: by request thread, and by account id. */
export async function blockRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { db, auth, link } = ctx;
  const accountParam = {
    type: "object",
    properties: { account_id: schemaParts.uuid },
    required: ["account_id"],
  } as const;

  app.post<{ Params: { thread_id: string } }>(
    "/v1/direct/pending/:thread_id/block",
    {
      schema: {
        tags: ["requests"],
        summary: "Blocks the sender of a request: its held items are deleted, its later messages dropped",
        description:
          "The sender keeps seeing its messages as sent (it cannot tell). Group invitations from it are dropped too.",
        security: bearer,
        params: threadIdParam,
        response: {
          200: {
            type: "object",
            properties: {
              thread_id: { type: "string" },
              account_id: schemaParts.uuid,
              deleted_items: { type: "integer" },
            },
            required: ["thread_id", "account_id", "deleted_items"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const r = await declineRequest(db, me.accountId, request.params.thread_id);
      if (r === undefined)
        throw new AppError(
          Code.NotFound,
          "REQUEST_NOT_FOUND",
          `no pending request in thread ${request.params.thread_id}`,
        );
      await link.requests.block({
        device: { accountId: me.accountId, deviceId: me.deviceId },
        peerAccountId: r.peerAccountId,
      });
      return {
        thread_id: request.params.thread_id,
        account_id: r.peerAccountId,
        deleted_items: r.deletedItems,
      };
    },
  );

  for (const method of ["PUT", "DELETE"] as const) {
    app.route<{ Params: { account_id: string } }>({
      method,
      url: "/v1/blocks/:account_id",
      schema: {
        tags: ["requests"],
        summary: method === "PUT" ? "Blocks a user (by account id)" : "Unblocks a user (by account id)",
        description:
          method === "PUT"
            ? "Its later messages and group invitations are dropped while it keeps seeing them as sent."
            : "Its next message is a message request again.",
        security: bearer,
        params: accountParam,
        response: { 204: { type: "null" }, ...problemResponses },
      },
      handler: async (request, reply) => {
        const me = await auth.authenticate(request);
        const device = { accountId: me.accountId, deviceId: me.deviceId };
        if (method === "PUT") await link.requests.block({ device, peerAccountId: request.params.account_id });
        else await link.requests.unblock({ device, peerAccountId: request.params.account_id });
        return reply.code(204).send();
      },
    });
  }
}
