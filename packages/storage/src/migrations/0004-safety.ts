import { sql, type Kysely } from "kysely";

/**
 * Safety without a backdoor (issue 9, part 1): server secrets shared by every delivery instance
 * (message-franking key, sealed-sender trust root and server key), verified abuse reports, and
 * each account's sealed-sender access setting (a verifier of its unidentified access key, never
 * the key itself).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Generated on first start (insert-if-absent, so concurrent instances agree on one value)
    -- unless overridden by the environment. Not per app: one backbone, one set of keys.
    CREATE TABLE server_keys (
      name text PRIMARY KEY,
      secret bytea NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    -- Reports whose franking proof verified. The reporter chose to reveal the plaintext.
    CREATE TABLE reports (
      id uuid PRIMARY KEY,
      -- The reporting (recipient) account's app.
      app smallint NOT NULL,
      reporter_account_id uuid NOT NULL,
      reporter_device_id integer NOT NULL,
      message_id uuid NOT NULL,
      -- The proven sender (for a sealed-sender message: as named by its sender certificate).
      sender_account_id uuid NOT NULL,
      sender_device_id integer NOT NULL,
      sealed_sender boolean NOT NULL DEFAULT false,
      server_timestamp_ms bigint NOT NULL,
      plaintext bytea NOT NULL,
      reason text NOT NULL DEFAULT '',
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (reporter_account_id, message_id)
    );
    CREATE INDEX reports_sender ON reports (sender_account_id, created_at);

    -- Who may send sealed-sender messages to an account: holders of its access key (only
    -- SHA-256 of the key is stored) or anyone when unrestricted. No row: sealed sender disabled.
    CREATE TABLE unidentified_access (
      account_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
      app smallint NOT NULL,
      access_key_hash bytea,
      unrestricted boolean NOT NULL DEFAULT false,
      updated_at timestamptz NOT NULL DEFAULT now()
    );
  `.execute(db);
}

/** Drops everything `up` created. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE unidentified_access, reports, server_keys;`.execute(db);
}
