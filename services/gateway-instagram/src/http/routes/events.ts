// Live delivery over Server-Sent Events, acknowledgements over HTTP.
import type { FastifyInstance } from "fastify";
import type { RouteContext } from "../context.js";
import { bearer, problemResponses, schemaParts } from "../schemas.js";

/** Registers the event stream and ack routes. */
export async function eventRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { auth, hub } = ctx;

  app.get<{ Querystring: { access_token?: string; window?: number } }>(
    "/v1/direct/events",
    {
      schema: {
        tags: ["direct"],
        summary: "Your device's live event stream (text/event-stream)",
        description: [
          "Authenticate with `Authorization: Bearer <token>` or, for EventSource, `?access_token=`.",
          "Events: `item` (data: ThreadItem; `id:` is its server_id), `receipt` (a ThreadItem of kind",
          "delivery_receipt: the item with that client_context reached the device in `sender`), `queue_empty`",
          "(everything stored before the stream started has been sent), `displaced` (another connection of this",
          "device took over; the stream ends), `error` ({reason, detail}; the stream ends, reconnect).",
          "Comment lines keep the stream alive every 15 s. Items not acknowledged with POST /v1/direct/ack are",
          "sent again on the next connection, so de-duplicate by server_id. At most `window` unacknowledged",
          "items are in flight.",
        ].join(" "),
        security: bearer,
        querystring: {
          type: "object",
          properties: {
            access_token: { type: "string" },
            window: {
              type: "integer",
              minimum: 1,
              maximum: 1000,
              description: "Unacknowledged items in flight (default 100).",
            },
          },
        },
        response: {
          200: {
            description: "An event stream.",
            content: { "text/event-stream": { schema: { type: "string" } } },
          },
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const me = await auth.authenticate(request, { allowQueryToken: true });
      void reply.hijack();
      request.raw.socket.setKeepAlive(true);
      request.raw.socket.setNoDelay(true);
      hub.open(me, reply.raw, request.query.window === undefined ? {} : { window: request.query.window });
      request.log.debug({ accountId: me.accountId, deviceId: me.deviceId }, "event stream opened");
    },
  );

  app.post<{ Body: { ids: string[] } }>(
    "/v1/direct/ack",
    {
      schema: {
        tags: ["direct"],
        summary: "Acknowledges delivered items (and receipts) by server_id; they are not sent again",
        security: bearer,
        body: {
          type: "object",
          properties: { ids: { type: "array", minItems: 1, maxItems: 1000, items: schemaParts.uuid } },
          required: ["ids"],
          additionalProperties: false,
        },
        response: { 204: { type: "null", description: "Acknowledged." }, ...problemResponses },
      },
    },
    async (request, reply) => {
      const me = await auth.authenticate(request);
      await hub.ack(me, request.body.ids);
      return reply.code(204).send();
    },
  );
}
