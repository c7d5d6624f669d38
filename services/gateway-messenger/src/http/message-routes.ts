// The Send API (one-to-one) and HTTP acknowledgements.
import type { FastifyInstance } from "fastify";
import type { SendMessageJson } from "../domain/translate.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { problems, sendMessageBody, sendOutcomeFields, uuidSchema } from "./schemas.js";
import { submitSend } from "./sends.js";

/** POST /v1/me/messages, POST /v1/me/acks. */
export async function messageRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const requireAuth = deps.auth.hook();

  app.post<{ Body: SendMessageJson }>(
    "/v1/me/messages",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["messages"],
        summary: "Send an end-to-end-encrypted message",
        description:
          "Messenger's Send API shape with one ciphertext per recipient device (every current device of the " +
          "recipient, except the sending device when writing to one's own user). Outcomes: 200 sent; 409 " +
          "DEVICES_CHANGED with missing/extra/stale device lists (nothing stored; repair sessions and retry with the " +
          "same mid); 404 RECIPIENT_NOT_FOUND. Retrying with the same mid is always safe (idempotent). A " +
          "sender_action (typing_on/typing_off) makes the message ephemeral: delivered only to connected devices.",
        security: [{ bearerAuth: [] }],
        body: sendMessageBody,
        response: {
          200: {
            type: "object",
            required: ["recipient_id", "message_id", "mid", "timestamp", "duplicate"],
            properties: {
              recipient_id: { ...uuidSchema, description: "the recipient's account_id" },
              ...sendOutcomeFields,
            },
          },
          ...problems(400, 401, 403, 404, 409, 429, 503, 504),
        },
      },
    },
    async (request) => (await submitSend(deps, principalOf(request), request.body)).result,
  );

  app.post<{ Body: { ids: string[] } }>(
    "/v1/me/acks",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["messages"],
        summary: "Acknowledge delivered messages",
        description:
          "Removes delivered messages (and delivery receipts) from the calling device's queue, by server_id. The " +
          "WebSocket's ack frame does the same; unknown or already acknowledged ids are ignored.",
        security: [{ bearerAuth: [] }],
        body: {
          type: "object",
          required: ["ids"],
          properties: { ids: { type: "array", minItems: 1, maxItems: 1000, items: uuidSchema } },
          additionalProperties: false,
        },
        response: {
          200: {
            type: "object",
            required: ["acknowledged"],
            properties: { acknowledged: { type: "integer", description: "ids that were still queued" } },
          },
          ...problems(400, 401, 503),
        },
      },
    },
    async (request) => {
      const me = principalOf(request);
      deps.live.noteAcked(me, request.body.ids);
      const r = await deps.link.messages.ackMessages({ device: me, messageIds: request.body.ids }, CALL);
      return { acknowledged: r.acknowledged };
    },
  );
}
