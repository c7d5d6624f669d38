// GET /v1/stream: the WebSocket for live delivery and acks.
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance } from "fastify";
import { principalOf } from "./auth.js";
import type { RouteDeps } from "./deps.js";
import { problems } from "./schemas.js";

/** GET /v1/stream (WebSocket upgrade). */
export async function streamRoute(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  // `wsHandler` (rather than `websocket: true`, which hides the route) keeps the route in the OpenAPI
  // document; a plain GET without an upgrade gets a 426 problem.
  app.route<{ Querystring: { access_token?: string; window?: number } }>({
    method: "GET",
    url: "/v1/stream",
    onRequest: deps.auth.hook({ allowQueryToken: true }),
    schema: {
      tags: ["stream"],
      summary: "Live delivery (WebSocket)",
      description:
        "Upgrade to a WebSocket authenticated by `Authorization: Bearer <token>` or `?access_token=`. The server " +
        'sends the device\'s stored backlog in queue order, then {"type":"queue_empty"}, then live messages, as ' +
        "StreamMessageEvent / StreamDeliveryEvent / StreamControlEvent JSON text frames. The client acknowledges " +
        'with StreamClientFrame {"type":"ack","ids":[server_id...]}; unacknowledged messages are delivered ' +
        "again on the next connection (de-duplicate by server_id). At most `window` unacknowledged messages are in " +
        'flight. A second socket of the same device displaces this one ({"type":"displaced"}, close code 4000). ' +
        'A bad frame gets {"type":"error","problem":{...}} and the socket stays open.',
      security: [{ bearerAuth: [] }],
      querystring: {
        type: "object",
        properties: {
          access_token: { type: "string", description: "alternative to the Authorization header (browsers)" },
          window: {
            type: "integer",
            minimum: 1,
            maximum: 1000,
            description: "unacknowledged messages in flight (default 100)",
          },
        },
        additionalProperties: false,
      },
      response: { 101: { description: "switching protocols", type: "null" }, ...problems(400, 401) },
    },
    handler: async () => {
      throw new AppError(Code.FailedPrecondition, "UPGRADE_REQUIRED", "connect with a WebSocket upgrade");
    },
    wsHandler: (socket, request) => {
      deps.live.attach(socket, principalOf(request), { window: request.query.window ?? 0 });
    },
  });
}
