import { sql, type Kysely } from "kysely";

/**
 * Third-party providers (issue 10): the provider registry with hashed credentials, and the
 * per-account opt-in that makes an account of our own apps reachable from providers' users.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE providers (
      id text PRIMARY KEY,
      display_name text NOT NULL,
      -- SHA-256 of the provider's bearer token (32 random bytes); the token itself is never stored.
      token_hash bytea NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz
    );

    ALTER TABLE accounts ADD COLUMN third_party_reachable boolean NOT NULL DEFAULT false;
  `.execute(db);
}

/** Drops everything `up` created. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE accounts DROP COLUMN third_party_reachable;
    DROP TABLE providers;
  `.execute(db);
}
