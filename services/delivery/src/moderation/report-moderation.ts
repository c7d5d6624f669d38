// Moderation of abuse reports (issue 9): list, read and resolve the verified reports, and count
// them per reported account. Shared by ModerationService (src/rpc/moderation-service.ts) and the
// `reports` CLI (src/reports-cli.ts). Validation errors carry a reason, as the API documents.
import { AppError, Code } from "@switchboard/errors";
import { ReportDecision, ReportStatus } from "@switchboard/proto";
import {
  countReportsAgainst,
  findReportRow,
  listReportRows,
  resolveReportRow,
  type Database,
  type ModeratedReportRow,
  type ReportCounts,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import { invalid, requireUuid } from "../domain/limits.js";

/** Reports per page when the request names no page size. */
export const DEFAULT_REPORT_PAGE_SIZE = 50;
/** Most reports per page; a larger page size fails INVALID_ARGUMENT (PAGE_SIZE_TOO_LARGE). */
export const MAX_REPORT_PAGE_SIZE = 200;
/** Longest resolution note, in characters. */
export const MAX_RESOLUTION_NOTE_CHARS = 1024;
/** Longest moderator name, in characters. */
export const MAX_MODERATOR_NAME_CHARS = 64;

/** Filters and page of {@link listReports}, as ListReportsRequest carries them. */
export interface ListReportsInput {
  status: ReportStatus;
  /** Empty for any sender. */
  senderAccountId: string;
  /** 0 for the default. */
  pageSize: number;
  /** Empty for the first page. */
  pageToken: string;
}

/** One page of reports and the token of the next (empty on the last page). */
export interface ReportPage {
  reports: ModeratedReportRow[];
  nextPageToken: string;
}

const CREATED_AT_KEY = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A page token: the last row's position and the filters it belongs to, base64url JSON. */
interface PageToken {
  at: string;
  id: string;
  /** `<status>:<sender>` of the query the token came from. */
  q: string;
}

const queryKey = (status: ReportStatus, sender: string) => `${status}:${sender}`;

const badToken = (message: string) => invalid("INVALID_PAGE_TOKEN", message);

function decodePageToken(token: string, expectedQuery: string): PageToken {
  if (token.length > 512 || !/^[A-Za-z0-9_-]+$/.test(token)) throw badToken("page_token is malformed");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw badToken("page_token is malformed");
  }
  const t = parsed as Partial<PageToken> | null;
  if (
    typeof t !== "object" ||
    t === null ||
    typeof t.at !== "string" ||
    !CREATED_AT_KEY.test(t.at) ||
    typeof t.id !== "string" ||
    !UUID.test(t.id) ||
    typeof t.q !== "string"
  )
    throw badToken("page_token is malformed");
  if (t.q !== expectedQuery)
    throw badToken("page_token belongs to a query with other filters: repeat the filters of the first page");
  return { at: t.at, id: t.id, q: t.q };
}

const encodePageToken = (t: PageToken) => Buffer.from(JSON.stringify(t)).toString("base64url");

function requireStatus(status: ReportStatus): "open" | "resolved" | undefined {
  switch (status) {
    case ReportStatus.UNSPECIFIED:
      return undefined;
    case ReportStatus.OPEN:
      return "open";
    case ReportStatus.RESOLVED:
      return "resolved";
    default:
      throw invalid("INVALID_STATUS", "status must be OPEN, RESOLVED or unspecified (any)");
  }
}

/**
 * One page of reports, newest first, filtered by status and sender. Throws INVALID_ARGUMENT:
 * PAGE_SIZE_TOO_LARGE, INVALID_PAGE_TOKEN (malformed, or from a query with other filters),
 * INVALID_ID (sender), INVALID_STATUS.
 */
export async function listReports(db: Kysely<Database>, input: ListReportsInput): Promise<ReportPage> {
  const status = requireStatus(input.status);
  const sender =
    input.senderAccountId === "" ? undefined : requireUuid(input.senderAccountId, "sender_account_id");
  if (!Number.isInteger(input.pageSize) || input.pageSize < 0)
    throw invalid("INVALID_PAGE_SIZE", `page_size must be 0..${MAX_REPORT_PAGE_SIZE}`);
  if (input.pageSize > MAX_REPORT_PAGE_SIZE)
    throw new AppError(
      Code.InvalidArgument,
      "PAGE_SIZE_TOO_LARGE",
      `page_size must be at most ${MAX_REPORT_PAGE_SIZE}`,
      { metadata: { limit: String(MAX_REPORT_PAGE_SIZE) } },
    );
  const pageSize = input.pageSize === 0 ? DEFAULT_REPORT_PAGE_SIZE : input.pageSize;
  const q = queryKey(input.status, sender ?? "");
  const after = input.pageToken === "" ? undefined : decodePageToken(input.pageToken, q);
  // One row more than the page tells whether another page follows.
  const rows = await listReportRows(db, {
    status,
    senderAccountId: sender,
    after: after && { createdAtKey: after.at, id: after.id },
    limit: pageSize + 1,
  });
  const reports = rows.slice(0, pageSize);
  const last = reports.at(-1);
  const nextPageToken =
    rows.length > pageSize && last ? encodePageToken({ at: last.created_at_key, id: last.id, q }) : "";
  return { reports, nextPageToken };
}

/** A report by id. Throws INVALID_ARGUMENT (INVALID_ID) or NOT_FOUND (REPORT_NOT_FOUND). */
export async function getReport(db: Kysely<Database>, reportId: string): Promise<ModeratedReportRow> {
  const id = requireUuid(reportId, "report_id");
  const row = await findReportRow(db, id);
  if (!row) throw new AppError(Code.NotFound, "REPORT_NOT_FOUND", `report ${id} not found`);
  return row;
}

const hasControlCharacter = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
};

/**
 * Records a moderator's decision. Idempotent: repeating the decision returns the first resolution
 * (`alreadyResolved` true; who, when and note stay the first ones). Throws INVALID_ARGUMENT
 * (INVALID_ID, INVALID_DECISION, INVALID_MODERATOR, FIELD_TOO_LONG), NOT_FOUND (REPORT_NOT_FOUND)
 * or FAILED_PRECONDITION (REPORT_ALREADY_RESOLVED: resolved with another decision).
 */
export async function resolveReport(
  db: Kysely<Database>,
  input: { reportId: string; decision: ReportDecision; note: string; moderator: string; now?: Date },
): Promise<{ report: ModeratedReportRow; alreadyResolved: boolean }> {
  const id = requireUuid(input.reportId, "report_id");
  if (input.decision !== ReportDecision.DISMISSED && input.decision !== ReportDecision.ACTIONED)
    throw invalid("INVALID_DECISION", "decision must be DISMISSED or ACTIONED");
  const moderator = input.moderator.trim();
  if (moderator.length === 0 || moderator.length > MAX_MODERATOR_NAME_CHARS || hasControlCharacter(moderator))
    throw invalid(
      "INVALID_MODERATOR",
      `moderator must name who decides: 1-${MAX_MODERATOR_NAME_CHARS} printable characters`,
    );
  if (input.note.length > MAX_RESOLUTION_NOTE_CHARS)
    throw invalid("FIELD_TOO_LONG", `note must be at most ${MAX_RESOLUTION_NOTE_CHARS} characters`);
  const r = await resolveReportRow(db, {
    id,
    decision: input.decision,
    note: input.note,
    resolvedBy: moderator,
    resolvedAt: input.now ?? new Date(),
  });
  if (!r) throw new AppError(Code.NotFound, "REPORT_NOT_FOUND", `report ${id} not found`);
  if (!r.changed && r.row.decision !== input.decision)
    throw new AppError(
      Code.FailedPrecondition,
      "REPORT_ALREADY_RESOLVED",
      `report ${id} was already resolved ${decisionName(r.row.decision)} by ${r.row.resolved_by ?? "?"}`,
    );
  return { report: r.row, alreadyResolved: !r.changed };
}

/** Report counts against one account (all zero when never reported). Throws INVALID_ARGUMENT (INVALID_ID). */
export async function summarizeReports(
  db: Kysely<Database>,
  senderAccountId: string,
): Promise<ReportCounts & { senderAccountId: string }> {
  const id = requireUuid(senderAccountId, "sender_account_id");
  return { senderAccountId: id, ...(await countReportsAgainst(db, id)) };
}

/** A report's status: RESOLVED once a decision is recorded, OPEN before. */
export const reportStatusOf = (row: ModeratedReportRow): ReportStatus =>
  row.resolved_at === null ? ReportStatus.OPEN : ReportStatus.RESOLVED;

/** `dismissed` / `actioned` (or `open` for null), as the CLI prints and parses decisions. */
export function decisionName(decision: number | null): string {
  if (decision === ReportDecision.DISMISSED) return "dismissed";
  if (decision === ReportDecision.ACTIONED) return "actioned";
  return "open";
}
