import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import type { ServiceImpl } from "@switchboard/grpc";
import type { ReportService } from "@switchboard/proto";
import { insertReport, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/principal.js";
import {
  FRANKING_TAG_BYTES,
  MAX_FRANKING_KEY_BYTES,
  MIN_FRANKING_KEY_BYTES,
  opensCommitment,
  type Franker,
} from "../domain/franking.js";
import { invalid, requireDeviceId, requireUuid } from "../domain/limits.js";
import type { CertificateAuthority } from "../domain/sealed-sender.js";

/** Largest plaintext a report may reveal. */
export const MAX_REPORT_PLAINTEXT_BYTES = 64 * 1024;
/** Longest free-text reason. */
export const MAX_REPORT_REASON_CHARS = 256;

const forged = (reason: string, message: string) => new AppError(Code.InvalidArgument, reason, message);

/**
 * The ReportService handlers: verify a franking proof (commitment opened by plaintext and key,
 * server tag over the routing metadata) and record the report. Nothing is stored for a report that
 * does not verify.
 */
export function createReportService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  franker: Franker;
  authority: CertificateAuthority;
  log: Logger;
}): ServiceImpl<typeof ReportService> {
  return {
    async reportMessage(req, ctx) {
      const principal = await deps.auth.authenticate(ctx.metadata);
      const reporter = await deps.auth.actingDevice(principal, req.reporter, "reporter");
      const messageId = requireUuid(req.messageId, "message_id");
      if (req.plaintext.byteLength === 0) throw invalid("MISSING_FIELD", "plaintext is required");
      if (req.plaintext.byteLength > MAX_REPORT_PLAINTEXT_BYTES)
        throw invalid("FIELD_TOO_LONG", `plaintext must be at most ${MAX_REPORT_PLAINTEXT_BYTES} bytes`);
      if (
        req.frankingKey.byteLength < MIN_FRANKING_KEY_BYTES ||
        req.frankingKey.byteLength > MAX_FRANKING_KEY_BYTES
      )
        throw invalid(
          "MISSING_FIELD",
          `franking_key must be ${MIN_FRANKING_KEY_BYTES}..${MAX_FRANKING_KEY_BYTES} bytes`,
        );
      if (req.reportTag.byteLength !== FRANKING_TAG_BYTES)
        throw invalid("MISSING_FIELD", `report_tag must be ${FRANKING_TAG_BYTES} bytes`);
      if (req.serverFrankingTag.byteLength !== FRANKING_TAG_BYTES)
        throw invalid("MISSING_FIELD", `server_franking_tag must be ${FRANKING_TAG_BYTES} bytes`);
      if (req.reason.length > MAX_REPORT_REASON_CHARS)
        throw invalid("FIELD_TOO_LONG", `reason must be at most ${MAX_REPORT_REASON_CHARS} characters`);
      const sealed = !req.sender || req.sender.accountId === "";
      const serverTimestampMs = Number(req.serverTimestampMs);

      if (!opensCommitment(req.reportTag, req.frankingKey, req.plaintext))
        throw forged("COMMITMENT_MISMATCH", "the plaintext and franking key do not open report_tag");
      const claimed = sealed
        ? { accountId: "", deviceId: 0 }
        : {
            accountId: requireUuid(req.sender?.accountId ?? "", "sender.account_id"),
            deviceId: requireDeviceId(req.sender?.deviceId ?? 0, "sender.device_id"),
          };
      const bound = deps.franker.verify(
        {
          commitment: req.reportTag,
          sourceAccountId: claimed.accountId,
          sourceDeviceId: claimed.deviceId,
          destinationAccountId: reporter.accountId,
          serverTimestampMs,
          messageId,
        },
        req.serverFrankingTag,
      );
      if (!bound)
        throw forged(
          "FRANKING_TAG_MISMATCH",
          "the server did not deliver this commitment from this sender to this account at this time",
        );
      let sender = claimed;
      if (sealed) {
        if (req.senderCertificate.byteLength === 0)
          throw invalid("MISSING_FIELD", "sender_certificate is required for a sealed-sender message");
        const named = deps.authority.validate(req.senderCertificate, serverTimestampMs);
        if (!named)
          throw forged(
            "INVALID_SENDER_CERTIFICATE",
            "sender_certificate was not issued by this server or had expired when the message was sent",
          );
        sender = named;
      }
      const reportId = randomUUID();
      await insertReport(deps.db, {
        id: reportId,
        app: reporter.app,
        reporterAccountId: reporter.accountId,
        reporterDeviceId: reporter.deviceId,
        messageId,
        senderAccountId: sender.accountId,
        senderDeviceId: sender.deviceId,
        sealedSender: sealed,
        serverTimestampMs,
        plaintext: req.plaintext,
        reason: req.reason,
      });
      ctx.log.info({ reportId, messageId, sealed }, "message reported");
      return { reportId, sender };
    },
  };
}
