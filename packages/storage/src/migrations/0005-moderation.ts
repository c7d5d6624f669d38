import { sql, type Kysely } from "kysely";

/**
 * Moderation of abuse reports (issue 9): a moderator's decision on a report. A report is open
 * while `resolved_at` is null; resolving sets the decision, note, moderator and time together
 * (the CHECK keeps them consistent). Listing is newest first, so the indexes end in
 * (created_at, id); the open queue has its own partial index.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE reports
      -- 1 dismissed, 2 actioned (switchboard.delivery.v1.ReportDecision); null while open.
      ADD COLUMN decision smallint,
      ADD COLUMN resolution_note text,
      -- The name the moderator gave (not an account: moderators are the operator's staff).
      ADD COLUMN resolved_by text,
      ADD COLUMN resolved_at timestamptz,
      ADD CONSTRAINT reports_resolution_complete CHECK (
        (decision IS NULL AND resolution_note IS NULL AND resolved_by IS NULL AND resolved_at IS NULL)
        OR (decision IN (1, 2) AND resolution_note IS NOT NULL AND resolved_by IS NOT NULL AND resolved_at IS NOT NULL)
      );
    CREATE INDEX reports_created ON reports (created_at, id);
    CREATE INDEX reports_open ON reports (created_at, id) WHERE resolved_at IS NULL;
  `.execute(db);
}

/** Drops everything `up` added. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX reports_open;
    DROP INDEX reports_created;
    ALTER TABLE reports
      DROP CONSTRAINT reports_resolution_complete,
      DROP COLUMN resolved_at,
      DROP COLUMN resolved_by,
      DROP COLUMN resolution_note,
      DROP COLUMN decision;
  `.execute(db);
}
