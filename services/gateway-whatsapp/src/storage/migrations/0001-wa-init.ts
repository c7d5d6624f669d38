import { sql, type Kysely } from "kysely";

/** The gateway's tables: verification codes, link codes and device tokens. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE wa_verification_codes (
      phone text PRIMARY KEY,
      code_hash bytea,
      code_salt bytea,
      code_expires_at timestamptz,
      attempts integer NOT NULL DEFAULT 0,
      window_started_at timestamptz NOT NULL,
      window_requests integer NOT NULL
    );

    CREATE TABLE wa_link_codes (
      code_hash bytea PRIMARY KEY,
      account_id uuid NOT NULL,
      phone text NOT NULL,
      expires_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX wa_link_codes_expires_at ON wa_link_codes (expires_at);

    CREATE TABLE wa_device_tokens (
      token_hash bytea PRIMARY KEY,
      account_id uuid NOT NULL,
      device_id integer NOT NULL,
      phone text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX wa_device_tokens_device ON wa_device_tokens (account_id, device_id);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE wa_device_tokens; DROP TABLE wa_link_codes; DROP TABLE wa_verification_codes;`.execute(
    db,
  );
}
