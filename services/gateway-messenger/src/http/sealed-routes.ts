// Sealed sender on the Messenger-style API (docs/safety.md): sender certificates, the caller's
// unidentified access key, and the OPEN send authorised only by the recipient's access key.
import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance } from "fastify";
import { sendFromJson, type CiphertextJson } from "../domain/translate.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { sendOutcome } from "./sends.js";
import { b64, ciphertextSchema, messageOptions, problems, sendOutcomeFields, uuidSchema } from "./schemas.js";

interface SealedSendJson {
  recipient: { account_id: string };
  access_key: string;
  message: {
    mid?: string;
    timestamp?: number;
    forwarded?: boolean;
    report_tag?: string;
    ciphertexts: CiphertextJson[];
  };
}

interface AccessJson {
  access_key?: string;
  unrestricted?: boolean;
  disabled?: boolean;
}

const fromB64 = (s: string | undefined) => new Uint8Array(Buffer.from(s ?? "", "base64"));
const toB64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

const invalidAccessKey = () =>
  new AppError(
    Code.Unauthenticated,
    "INVALID_ACCESS_KEY",
    "the unidentified access key does not authorise sealed-sender messages to this user",
  );

/** GET /v1/me/sender_certificate, PUT /v1/me/settings/unidentified_access, POST /v1/sealed/messages. */
export async function sealedRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  app.get(
    "/v1/me/sender_certificate",
    {
      onRequest: deps.auth.hook(),
      schema: {
        tags: ["safety"],
        summary: "A sealed-sender certificate for the calling device (24 hours) and the trust root",
        security: [{ bearerAuth: [] }],
        response: {
          200: {
            type: "object",
            required: ["certificate", "expires_at", "trust_root"],
            properties: {
              certificate: { type: "string", contentEncoding: "base64" },
              expires_at: { type: "integer", description: "ms since the epoch" },
              trust_root: { type: "string", contentEncoding: "base64" },
            },
          },
          ...problems(400, 401, 503),
        },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const device = { accountId: me.accountId, deviceId: me.deviceId };
      const [cert, root] = await Promise.all([
        deps.link.sealedSender.getSenderCertificate({ device }, CALL),
        deps.link.sealedSender.getTrustRoot({}, CALL),
      ]);
      return {
        certificate: toB64(cert.certificate),
        expires_at: Number(cert.expiresAtMs),
        trust_root: toB64(root.publicKey),
      };
    },
  );

  app.put<{ Body: AccessJson }>(
    "/v1/me/settings/unidentified_access",
    {
      onRequest: deps.auth.hook(),
      schema: {
        tags: ["safety"],
        summary: "Who may send the caller sealed-sender messages",
        description:
          "access_key: holders of this 16-byte key (derived from the profile key); unrestricted: anyone; " +
          "disabled: nobody. Rotating the key blocks every sender that knew only the old one.",
        security: [{ bearerAuth: [] }],
        body: {
          type: "object",
          properties: {
            access_key: b64(24, "16 bytes, base64"),
            unrestricted: { type: "boolean" },
            disabled: { type: "boolean" },
          },
          additionalProperties: false,
        },
        response: { 204: { type: "null" }, ...problems(400, 401, 503) },
      },
    },
    async (request, reply) => {
      const me = principalOf(request);
      const device = { accountId: me.accountId, deviceId: me.deviceId };
      const b = request.body;
      if (b.disabled === true) await deps.link.sealedSender.disableUnidentifiedAccess({ device }, CALL);
      else
        await deps.link.sealedSender.setUnidentifiedAccess(
          { device, accessKey: fromB64(b.access_key), unrestricted: b.unrestricted === true },
          CALL,
        );
      return reply.code(204).send();
    },
  );

  app.post<{ Body: SealedSendJson }>(
    "/v1/sealed/messages",
    {
      schema: {
        tags: ["safety"],
        summary: "Send a sealed-sender message (open: no access token, only the recipient's access key)",
        description:
          "Every ciphertext must have type sealed_sender. The sender is named only inside the ciphertext. " +
          "401 INVALID_ACCESS_KEY for a wrong key and for unknown users alike; otherwise as POST /v1/me/messages.",
        body: {
          type: "object",
          required: ["recipient", "access_key", "message"],
          properties: {
            recipient: {
              type: "object",
              required: ["account_id"],
              properties: { account_id: uuidSchema },
              additionalProperties: false,
            },
            access_key: b64(24, "the recipient's 16-byte unidentified access key"),
            message: {
              type: "object",
              required: ["ciphertexts"],
              properties: {
                mid: messageOptions.mid,
                timestamp: messageOptions.timestamp,
                forwarded: messageOptions.forwarded,
                report_tag: messageOptions.report_tag,
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
            properties: { recipient_id: uuidSchema, ...sendOutcomeFields },
          },
          ...problems(400, 401, 409, 429, 503, 504),
        },
      },
    },
    async (request) => {
      const body = request.body;
      const destinationAccountId = body.recipient.account_id;
      const req = sendFromJson(
        {
          recipient: { account_id: destinationAccountId },
          notification_type: "REGULAR",
          message: body.message,
        },
        {
          sender: { accountId: "", deviceId: 0 },
          destinationAccountId,
          defaults: { mid: randomUUID(), timestampMs: Date.now() },
        },
      );
      req.sender = undefined;
      const response = await deps.link.sendSealed(req, fromB64(body.access_key));
      // An unknown recipient is answered as a bad access key: a sealed sender learns nothing more.
      return sendOutcome(response, destinationAccountId, req.clientMessageId, invalidAccessKey);
    },
  );
}
