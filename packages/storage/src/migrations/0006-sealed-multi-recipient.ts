import { sql, type Kysely } from "kysely";

/**
 * Sealed sender to several recipients (issue 9): a multi-recipient send is authorised by the XOR
 * of every recipient's access key (as Signal-Server's multi-recipient endpoint), which the server
 * can only check against the keys themselves, not their SHA-256. Accounts that set their key
 * before this migration have only the verifier: they accept sealed one-to-one messages as before
 * and take part in multi-recipient sends once they set their key again.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE unidentified_access ADD COLUMN access_key bytea;`.execute(db);
}

/** Drops the column `up` added. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE unidentified_access DROP COLUMN access_key;`.execute(db);
}
