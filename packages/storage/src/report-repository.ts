// Moderation of abuse reports (issue 9): listing, reading and resolving the `reports` table
// (migrations 0004 and 0005). Recording a report is `insertReport` in safety-repository.ts.
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";
import type { ReportRow } from "./safety-repository.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A report as moderation reads it, with its exact position for keyset paging. */
export type ModeratedReportRow = ReportRow & {
  /** `created_at` in UTC with microseconds (`2026-01-02T03:04:05.123456Z`): a lossless page key. */
  created_at_key: string;
};

/** Filters and position of one page of {@link listReportRows}. */
export interface ReportListQuery {
  /** Only open (unresolved) or only resolved reports; undefined for both. */
  status?: "open" | "resolved";
  /** Only reports against this sender account. */
  senderAccountId?: string;
  /** Continue after this report (exclusive), newest first: its `created_at_key` and id. */
  after?: { createdAtKey: string; id: string };
  /** Most rows to return. */
  limit: number;
}

const bytes = (b: Uint8Array): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

const createdAtKey = sql<string>`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const toRow = (r: ModeratedReportRow): ModeratedReportRow => ({
  ...r,
  plaintext: bytes(r.plaintext),
  server_timestamp_ms: Number(r.server_timestamp_ms),
});

/**
 * One page of reports, newest first (by `created_at`, then id, both descending), filtered by
 * status and sender. Keyset paging: pass the last row's `created_at_key` and id as `after`.
 */
export async function listReportRows(db: Db, q: ReportListQuery): Promise<ModeratedReportRow[]> {
  let query = db
    .selectFrom("reports")
    .selectAll()
    .select(createdAtKey.as("created_at_key"))
    .orderBy("created_at", "desc")
    .orderBy("id", "desc")
    .limit(q.limit);
  if (q.status === "open") query = query.where("resolved_at", "is", null);
  if (q.status === "resolved") query = query.where("resolved_at", "is not", null);
  if (q.senderAccountId !== undefined) query = query.where("sender_account_id", "=", q.senderAccountId);
  if (q.after)
    query = query.where(
      sql<boolean>`(created_at, id) < (${q.after.createdAtKey}::timestamptz, ${q.after.id}::uuid)`,
    );
  return (await query.execute()).map(toRow);
}

/** A report by id, or undefined. */
export async function findReportRow(db: Db, id: string): Promise<ModeratedReportRow | undefined> {
  const row = await db
    .selectFrom("reports")
    .selectAll()
    .select(createdAtKey.as("created_at_key"))
    .where("id", "=", id)
    .executeTakeFirst();
  return row ? toRow(row) : undefined;
}

/**
 * Resolves an open report (decision 1 dismissed, 2 actioned) in one conditional update, so of two
 * concurrent resolutions exactly one wins. Returns the row with `changed` true when this call
 * resolved it, the unchanged row with `changed` false when it was already resolved, or
 * undefined for an unknown id.
 */
export async function resolveReportRow(
  db: Db,
  r: { id: string; decision: number; note: string; resolvedBy: string; resolvedAt: Date },
): Promise<{ row: ModeratedReportRow; changed: boolean } | undefined> {
  const updated = await db
    .updateTable("reports")
    .set({
      decision: r.decision,
      resolution_note: r.note,
      resolved_by: r.resolvedBy,
      resolved_at: r.resolvedAt,
    })
    .where("id", "=", r.id)
    .where("resolved_at", "is", null)
    .returningAll()
    .returning(createdAtKey.as("created_at_key"))
    .executeTakeFirst();
  if (updated) return { row: toRow(updated), changed: true };
  const existing = await findReportRow(db, r.id);
  return existing ? { row: existing, changed: false } : undefined;
}

/** Report counts against one sender account (all zero, with null times, when never reported). */
export interface ReportCounts {
  reports: number;
  open: number;
  actioned: number;
  distinctReporters: number;
  firstAt: Date | null;
  lastAt: Date | null;
}

/** Counts the reports against `senderAccountId`: total, open, actioned and distinct reporters. */
export async function countReportsAgainst(db: Db, senderAccountId: string): Promise<ReportCounts> {
  const row = await db
    .selectFrom("reports")
    .select([
      sql<number>`count(*)::int`.as("reports"),
      sql<number>`(count(*) FILTER (WHERE resolved_at IS NULL))::int`.as("open"),
      sql<number>`(count(*) FILTER (WHERE decision = 2))::int`.as("actioned"),
      sql<number>`count(DISTINCT reporter_account_id)::int`.as("distinct_reporters"),
      sql<Date | null>`min(created_at)`.as("first_at"),
      sql<Date | null>`max(created_at)`.as("last_at"),
    ])
    .where("sender_account_id", "=", senderAccountId)
    .executeTakeFirstOrThrow();
  return {
    reports: row.reports,
    open: row.open,
    actioned: row.actioned,
    distinctReporters: row.distinct_reporters,
    firstAt: row.first_at,
    lastAt: row.last_at,
  };
}
