// Sealed sender on the Instagram-style API (docs/safety.md): sender certificates, the caller's
// unidentified access key, and the OPEN send of a sealed item, authorised only by the recipient's
// access key. The gateway never learns who sent a sealed item and stores nothing about it: the
// item has no thread (thread_id null) and touches no inbox or request row.
import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance } from "fastify";
import { directSendToRequest, type NativeCiphertext } from "../../domain/translate.js";
import type { RouteContext } from "../context.js";
import { ProblemError } from "../problem.js";
import { bearer, problemResponses, ref, schemaParts } from "../schemas.js";

interface AccessBody {
  access_key?: string;
  unrestricted?: boolean;
  disabled?: boolean;
}

interface SealedItemBody {
  recipient: { account_id: string };
  access_key: string;
  client_context?: string;
  client_timestamp_ms?: number;
  urgent?: boolean;
  forwarded?: boolean;
  report_tag?: string;
  ciphertexts: NativeCiphertext[];
}

/** 16 bytes, base64 (the length the delivery service requires). */
const accessKeySchema = {
  type: "string",
  pattern: "^[A-Za-z0-9+/]{22}==$",
  contentEncoding: "base64",
} as const;

const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
const toB64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

const invalidAccessKey = () =>
  new AppError(
    Code.Unauthenticated,
    "INVALID_ACCESS_KEY",
    "the unidentified access key does not authorise sealed-sender items to this user",
  );

/**
 * Registers GET /v1/me/sender_certificate, PUT /v1/me/settings/unidentified_access and the open
 * POST /v1/sealed/items.
 */
export async function sealedRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { link, auth } = ctx;

  app.get(
    "/v1/me/sender_certificate",
    {
      schema: {
        tags: ["safety"],
        summary: "A sealed-sender certificate for the calling device (valid 24 hours) and the trust root",
        description:
          "Put the certificate inside each sealed ciphertext; recipients check it against the trust root " +
          "(pin it in the client rather than trusting this answer).",
        security: bearer,
        response: {
          200: {
            type: "object",
            properties: {
              certificate: schemaParts.base64,
              expires_at_ms: schemaParts.millis,
              trust_root: schemaParts.base64,
            },
            required: ["certificate", "expires_at_ms", "trust_root"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const device = { accountId: me.accountId, deviceId: me.deviceId };
      const [cert, root] = await Promise.all([
        link.sealedSender.getSenderCertificate({ device }),
        link.sealedSender.getTrustRoot({}),
      ]);
      return {
        certificate: toB64(cert.certificate),
        expires_at_ms: Number(cert.expiresAtMs),
        trust_root: toB64(root.publicKey),
      };
    },
  );

  app.put<{ Body: AccessBody }>(
    "/v1/me/settings/unidentified_access",
    {
      schema: {
        tags: ["safety"],
        summary: "Sets who may send you sealed-sender items",
        description:
          "access_key: holders of this 16-byte key (derived from your profile key); unrestricted: anyone; " +
          "disabled: nobody (the default). Rotating the key blocks every sender that knew only the old one.",
        security: bearer,
        body: {
          type: "object",
          properties: {
            access_key: accessKeySchema,
            unrestricted: { type: "boolean", default: false },
            disabled: { type: "boolean", default: false },
          },
          additionalProperties: false,
        },
        response: { 204: { type: "null" }, ...problemResponses },
      },
    },
    async (request, reply) => {
      const me = await auth.authenticate(request);
      const device = { accountId: me.accountId, deviceId: me.deviceId };
      const b = request.body;
      if (b.disabled === true) {
        if (b.access_key !== undefined || b.unrestricted === true)
          throw new AppError(
            Code.InvalidArgument,
            "CONFLICTING_ACCESS",
            "disabled cannot be combined with access_key or unrestricted",
          );
        await link.sealedSender.disableUnidentifiedAccess({ device });
      } else {
        if (b.access_key === undefined && b.unrestricted !== true)
          throw new AppError(
            Code.InvalidArgument,
            "MISSING_FIELD",
            "give access_key, unrestricted: true, or disabled: true",
          );
        await link.sealedSender.setUnidentifiedAccess({
          device,
          accessKey: b.access_key === undefined ? new Uint8Array(0) : fromB64(b.access_key),
          unrestricted: b.unrestricted === true,
        });
      }
      return reply.code(204).send();
    },
  );

  app.post<{ Body: SealedItemBody }>(
    "/v1/sealed/items",
    {
      schema: {
        tags: ["safety"],
        summary: "Sends a sealed-sender item (open: no access token, only the recipient's access key)",
        description:
          "Send WITHOUT an Authorization header: the sender is named only inside the ciphertexts (one per " +
          "current device of the recipient, each of type sealed_sender). The recipient gets an item with " +
          "sender null and thread_id null, delivered live even while you are not an accepted contact " +
          "(sealed items are never held as requests). 401 INVALID_ACCESS_KEY for a wrong key and for unknown " +
          "users alike; 409 DEVICES_CHANGED as for thread items. Idempotent on client_context.",
        body: {
          type: "object",
          properties: {
            recipient: {
              type: "object",
              properties: { account_id: schemaParts.uuid },
              required: ["account_id"],
              additionalProperties: false,
            },
            access_key: {
              ...accessKeySchema,
              description: "The recipient's 16-byte unidentified access key.",
            },
            client_context: {
              type: "string",
              minLength: 1,
              maxLength: 64,
              description: "Your id of the item (default: a random one).",
            },
            client_timestamp_ms: schemaParts.millis,
            urgent: { type: "boolean", default: true, description: "Wake the recipient." },
            forwarded: { type: "boolean", default: false },
            report_tag: schemaParts.base64,
            ciphertexts: {
              type: "array",
              minItems: 1,
              maxItems: 100,
              items: {
                type: "object",
                properties: {
                  device_id: schemaParts.deviceId,
                  registration_id: { type: "integer", minimum: 0, maximum: 16380 },
                  type: { type: "string", enum: ["sealed_sender"] },
                  body: schemaParts.base64,
                },
                required: ["device_id", "registration_id", "type", "body"],
                additionalProperties: false,
              },
            },
          },
          required: ["recipient", "access_key", "ciphertexts"],
          additionalProperties: false,
        },
        response: {
          200: {
            type: "object",
            properties: {
              server_id: schemaParts.uuid,
              recipient_id: schemaParts.uuid,
              client_context: { type: "string" },
              server_timestamp_ms: schemaParts.millis,
              duplicate: { type: "boolean", description: "True when this answers a retry." },
            },
            required: ["server_id", "recipient_id", "client_context", "server_timestamp_ms", "duplicate"],
          },
          409: {
            ...ref("Problem"),
            description: "DEVICES_CHANGED: { account_id, missing_devices, extra_devices, stale_devices }",
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const b = request.body;
      const recipient = b.recipient.account_id;
      const clientContext = b.client_context ?? randomUUID();
      const req = directSendToRequest(
        {
          client_context: clientContext,
          item_type: "message",
          client_timestamp_ms: b.client_timestamp_ms ?? Date.now(),
          urgent: b.urgent ?? true,
          forwarded: b.forwarded ?? false,
          ...(b.report_tag !== undefined ? { report_tag: b.report_tag } : {}),
          ciphertexts: b.ciphertexts,
        },
        { accountId: "", deviceId: 0 },
        recipient,
      );
      req.sender = undefined;
      const r = (await link.sendSealed(req, fromB64(b.access_key))).result;
      switch (r.case) {
        case "sent":
          return {
            server_id: r.value.messageId,
            recipient_id: recipient,
            client_context: clientContext,
            server_timestamp_ms: Number(r.value.serverTimestampMs),
            duplicate: r.value.duplicate,
          };
        case "mismatchedDevices":
          throw new ProblemError(Code.Aborted, "DEVICES_CHANGED", "the recipient's devices changed", {
            account_id: recipient,
            missing_devices: r.value.missingDevices,
            extra_devices: r.value.extraDevices,
            stale_devices: [],
          });
        case "staleDevices":
          throw new ProblemError(
            Code.Aborted,
            "DEVICES_CHANGED",
            "some of the recipient's devices were reinstalled",
            {
              account_id: recipient,
              missing_devices: [],
              extra_devices: [],
              stale_devices: r.value.staleDevices,
            },
          );
        default:
          // Unknown recipients look exactly like a wrong key: the open route reveals nothing.
          throw invalidAccessKey();
      }
    },
  );
}
