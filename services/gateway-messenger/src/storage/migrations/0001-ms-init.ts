import { sql, type Kysely } from "kysely";

// The Messenger-style gateway's own state: numeric user ids and access tokens (SHA-256 digests).
// Accounts, devices and keys live in the delivery service.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE SEQUENCE IF NOT EXISTS ms_user_id_seq START WITH 100000 MINVALUE 100000`.execute(db);
  await db.schema
    .createTable("ms_tokens")
    .ifNotExists()
    .addColumn("token_sha256", "bytea", (c) => c.primaryKey())
    .addColumn("account_id", "uuid", (c) => c.notNull())
    .addColumn("device_id", "integer", (c) => c.notNull())
    .addColumn("user_id", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex("ms_tokens_device_idx")
    .ifNotExists()
    .on("ms_tokens")
    .columns(["account_id", "device_id"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("ms_tokens").ifExists().execute();
  await sql`DROP SEQUENCE IF EXISTS ms_user_id_seq`.execute(db);
}
