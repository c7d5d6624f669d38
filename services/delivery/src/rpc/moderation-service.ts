import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@switchboard/grpc";
import { ReportStatus, type App, type ModerationService, type ReportSchema } from "@switchboard/proto";
import type { Database, ModeratedReportRow } from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { ModeratorGate } from "../auth/moderator.js";
import {
  getReport,
  listReports,
  reportStatusOf,
  resolveReport,
  summarizeReports,
} from "../moderation/report-moderation.js";

/** A stored report as ModerationService returns it. */
export function reportRowToProto(row: ModeratedReportRow): MessageInitShape<typeof ReportSchema> {
  const status = reportStatusOf(row);
  return {
    id: row.id,
    app: row.app as App,
    reporter: { accountId: row.reporter_account_id, deviceId: row.reporter_device_id },
    sender: { accountId: row.sender_account_id, deviceId: row.sender_device_id },
    messageId: row.message_id,
    sealedSender: row.sealed_sender,
    serverTimestampMs: BigInt(row.server_timestamp_ms),
    plaintext: row.plaintext,
    reason: row.reason,
    reportedAtMs: BigInt(row.created_at.getTime()),
    status,
    resolution:
      status === ReportStatus.RESOLVED
        ? {
            decision: row.decision ?? 0,
            note: row.resolution_note ?? "",
            moderator: row.resolved_by ?? "",
            resolvedAtMs: BigInt(row.resolved_at?.getTime() ?? 0),
          }
        : undefined,
  };
}

/**
 * The ModerationService handlers (operator-only: every call passes the moderator gate first).
 * Reads and resolutions are logged with ids only, never plaintext or reasons.
 */
export function createModerationService(deps: {
  db: Kysely<Database>;
  gate: ModeratorGate;
}): ServiceImpl<typeof ModerationService> {
  return {
    async listReports(req, ctx) {
      await deps.gate.requireModerator(ctx.metadata);
      const page = await listReports(deps.db, {
        status: req.status,
        senderAccountId: req.senderAccountId,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      ctx.log.info({ count: page.reports.length }, "reports listed");
      return { reports: page.reports.map(reportRowToProto), nextPageToken: page.nextPageToken };
    },

    async getReport(req, ctx) {
      await deps.gate.requireModerator(ctx.metadata);
      const row = await getReport(deps.db, req.reportId);
      ctx.log.info({ reportId: row.id }, "report read");
      return { report: reportRowToProto(row) };
    },

    async resolveReport(req, ctx) {
      await deps.gate.requireModerator(ctx.metadata);
      const r = await resolveReport(deps.db, {
        reportId: req.reportId,
        decision: req.decision,
        note: req.note,
        moderator: req.moderator,
      });
      ctx.log.info(
        { reportId: r.report.id, decision: r.report.decision, alreadyResolved: r.alreadyResolved },
        "report resolved",
      );
      return { report: reportRowToProto(r.report), alreadyResolved: r.alreadyResolved };
    },

    async getReportSummary(req, ctx) {
      await deps.gate.requireModerator(ctx.metadata);
      const s = await summarizeReports(deps.db, req.senderAccountId);
      return {
        senderAccountId: s.senderAccountId,
        reports: s.reports,
        openReports: s.open,
        distinctReporters: s.distinctReporters,
        actionedReports: s.actioned,
        firstReportedAtMs: BigInt(s.firstAt?.getTime() ?? 0),
        lastReportedAtMs: BigInt(s.lastAt?.getTime() ?? 0),
      };
    },
  };
}
