// GET /v1/stream: the WebSocket for live delivery and acks.
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { DeviceAddress, SendGroupMessageJson, SendMessageJson } from "../domain/translate.js";
import type { SocketSends } from "../live/connections.js";
import { principalOf } from "./auth.js";
import type { RouteDeps } from "./deps.js";
import { validationError, type ValidationItem } from "./problem.js";
import { problems } from "./schemas.js";
import { submitGroupSend, submitSend } from "./sends.js";

// Compiled once per route by fastify's validator (the shared schemas are registered on it), keyed by
// these objects.
const SEND_FRAME = { $ref: "StreamSendFrame#" } as const;
const SEND_GROUP_FRAME = { $ref: "StreamSendGroupFrame#" } as const;

/**
 * The socket's sends for the device `request` authenticated: each frame is validated against its
 * schema (as the REST body is), then submitted as POST /v1/me/messages or /v1/groups/{id}/messages.
 */
function socketSends(deps: RouteDeps, request: FastifyRequest, me: DeviceAddress): SocketSends {
  const validateSend = request.compileValidationSchema(SEND_FRAME);
  const validateGroup = request.compileValidationSchema(SEND_GROUP_FRAME);
  const invalid = (errors: unknown) => validationError((errors ?? []) as ValidationItem[], "frame");
  return {
    async submit({ type, frame }) {
      if (type === "send") {
        if (!validateSend(frame)) throw invalid(validateSend.errors);
        return submitSend(deps, me, frame as unknown as SendMessageJson);
      }
      if (!validateGroup(frame)) throw invalid(validateGroup.errors);
      const body = frame as unknown as SendGroupMessageJson & { group_id: string };
      return submitGroupSend(deps, me, body.group_id, body);
    },
  };
}

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
        'A bad frame gets {"type":"error","problem":{...}} and the socket stays open. The socket also carries sends: ' +
        'StreamSendFrame {"type":"send","ref":"1",...} (the body of POST /v1/me/messages) and StreamSendGroupFrame ' +
        '{"type":"send_group","ref":"2","group_id":"...",...}, each answered by a StreamSendResult with its ref.',
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
      const me = principalOf(request);
      deps.live.attach(socket, me, {
        window: request.query.window ?? 0,
        sends: socketSends(deps, request, me),
        transport: request.raw.socket,
      });
    },
  });
}
