// Abuse reports with message franking (docs/safety.md): the recipient reveals a received item's
// plaintext and franking key; the delivery service verifies the proof and records the report.
import type { FastifyInstance } from "fastify";
import type { RouteContext } from "../context.js";
import { bearer, problemResponses } from "../schemas.js";

interface ReportBody {
  server_id: string;
  sender?: { account_id: string; device_id: number };
  server_timestamp_ms: number;
  plaintext: string;
  franking_key: string;
  report_tag: string;
  server_franking_tag: string;
  sender_certificate?: string;
  reason?: string;
}

const b64 = (maxLength: number, description: string) => ({
  type: "string",
  contentEncoding: "base64",
  maxLength,
  description,
});
const fromB64 = (s: string | undefined) => new Uint8Array(Buffer.from(s ?? "", "base64"));

const reportBody = {
  type: "object",
  required: [
    "server_id",
    "server_timestamp_ms",
    "plaintext",
    "franking_key",
    "report_tag",
    "server_franking_tag",
  ],
  properties: {
    server_id: { type: "string", format: "uuid", description: "the item's server_id" },
    sender: {
      type: "object",
      description: "the item's sender (account_id, device_id); omit for a sealed-sender item",
      required: ["account_id", "device_id"],
      properties: {
        account_id: { type: "string", format: "uuid" },
        device_id: { type: "integer", minimum: 1, maximum: 1000 },
      },
      additionalProperties: false,
    },
    server_timestamp_ms: { type: "integer", minimum: 0, description: "the item's server_timestamp_ms" },
    plaintext: b64(
      4 * Math.ceil((64 * 1024) / 3),
      "the serialized DataMessage with franking_key cleared (what the commitment covers)",
    ),
    franking_key: b64(88, "the franking key from the decrypted item"),
    report_tag: b64(88, "the item's report_tag"),
    server_franking_tag: b64(88, "the item's server_franking_tag"),
    sender_certificate: b64(4096, "sealed sender only: the sender certificate from the decrypted item"),
    reason: { type: "string", maxLength: 256 },
  },
  additionalProperties: false,
} as const;

/** Registers POST /v1/me/reports. */
export async function reportRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { link, auth } = ctx;
  app.post<{ Body: ReportBody }>(
    "/v1/me/reports",
    {
      schema: {
        tags: ["safety"],
        summary: "Reports a received item for abuse review, with its franking proof",
        description:
          "Fails 400 with reason COMMITMENT_MISMATCH (plaintext or key do not open report_tag), " +
          "FRANKING_TAG_MISMATCH (the server did not deliver this commitment from this sender to you at this time) " +
          "or INVALID_SENDER_CERTIFICATE; 409 ALREADY_REPORTED.",
        security: bearer,
        body: reportBody,
        response: {
          201: {
            type: "object",
            required: ["report_id"],
            properties: { report_id: { type: "string", format: "uuid" } },
          },
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const me = await auth.authenticate(request);
      const b = request.body;
      const r = await link.reports.reportMessage({
        reporter: { accountId: me.accountId, deviceId: me.deviceId },
        messageId: b.server_id,
        sender: b.sender ? { accountId: b.sender.account_id, deviceId: b.sender.device_id } : undefined,
        serverTimestampMs: BigInt(b.server_timestamp_ms),
        plaintext: fromB64(b.plaintext),
        frankingKey: fromB64(b.franking_key),
        reportTag: fromB64(b.report_tag),
        serverFrankingTag: fromB64(b.server_franking_tag),
        senderCertificate: fromB64(b.sender_certificate),
        reason: b.reason ?? "",
      });
      request.log.info({ reportId: r.reportId }, "item reported");
      return reply.code(201).send({ report_id: r.reportId });
    },
  );
}
