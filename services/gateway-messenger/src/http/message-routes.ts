// The Send API (one-to-one) and HTTP acknowledgements.
import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance } from "fastify";
import { sendFromJson, type SendMessageJson } from "../domain/translate.js";
import { recipientFromJson } from "../domain/users.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { ProblemError } from "./problem.js";
import { ciphertextSchema, messageOptions, problems, sendOutcomeFields, uuidSchema } from "./schemas.js";

/** The 409 a one-to-one send answers when the sender's device list is out of date. */
export function devicesChanged(
  accountId: string,
  lists: { missing: number[]; extra: number[]; stale: number[] },
): ProblemError {
  return new ProblemError(
    Code.Aborted,
    "DEVICES_CHANGED",
    "the recipient's devices differ from the ciphertexts sent: fetch keys for missing and stale devices, drop " +
      "sessions of extra ones, and retry with the same mid",
    { account_id: accountId, ...lists },
  );
}

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
        body: {
          type: "object",
          required: ["recipient", "message"],
          properties: {
            recipient: { $ref: "Recipient#" },
            messaging_type: {
              type: "string",
              enum: ["RESPONSE", "UPDATE", "MESSAGE_TAG"],
              description: "accepted for compatibility; not carried to the recipient",
            },
            notification_type: {
              type: "string",
              enum: ["REGULAR", "NO_PUSH"],
              description: "REGULAR (default) wakes the recipient (urgent); NO_PUSH does not",
            },
            sender_action: { type: "string", enum: ["typing_on", "typing_off"] },
            message: {
              type: "object",
              required: ["ciphertexts"],
              properties: {
                ...messageOptions,
                ciphertexts: { type: "array", minItems: 1, maxItems: 100, items: ciphertextSchema },
              },
              additionalProperties: false,
            },
          },
          additionalProperties: false,
        },
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
    async (request) => {
      const me = principalOf(request);
      const body = request.body;
      const destinationAccountId = await deps.directory.require(recipientFromJson(body.recipient));
      const req = sendFromJson(body, {
        sender: { accountId: me.accountId, deviceId: me.deviceId },
        destinationAccountId,
        defaults: { mid: randomUUID(), timestampMs: Date.now() },
      });
      const r = (await deps.link.send(req)).result;
      switch (r.case) {
        case "sent":
          return {
            recipient_id: destinationAccountId,
            message_id: r.value.messageId,
            mid: req.clientMessageId,
            timestamp: Number(r.value.serverTimestampMs),
            duplicate: r.value.duplicate,
          };
        case "mismatchedDevices":
          throw devicesChanged(r.value.accountId, {
            missing: [...r.value.missingDevices],
            extra: [...r.value.extraDevices],
            stale: [],
          });
        case "staleDevices":
          throw devicesChanged(r.value.accountId, {
            missing: [],
            extra: [],
            stale: [...r.value.staleDevices],
          });
        case "recipientNotFound":
          throw new AppError(Code.NotFound, "RECIPIENT_NOT_FOUND", "no user has this account id");
        default:
          throw new AppError(Code.Internal, "INVALID_RESPONSE", "send returned no outcome");
      }
    },
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
