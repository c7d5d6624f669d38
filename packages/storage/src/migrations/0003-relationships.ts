import { sql, type Kysely } from "kysely";

/**
 * Message requests and protection of minors: per-account `minor` and `requests_policy`, the
 * relationships between accounts (accepted / blocked, owned by one account), and group
 * invitations held until the invitee accepts.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE accounts
      ADD COLUMN minor boolean NOT NULL DEFAULT false,
      ADD COLUMN requests_policy smallint NOT NULL DEFAULT 0;

    -- One row per (owner, peer): how the owner treats messages from the peer. A row exists once
    -- the owner accepted the peer, messaged the peer first, or blocked the peer.
    CREATE TABLE relationships (
      owner_account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
      peer_account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
      app smallint NOT NULL,
      state smallint NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (owner_account_id, peer_account_id)
    );

    -- Group invitations from accounts the invitee has no accepted relationship with, held until
    -- the invitee accepts (then a member) or declines.
    CREATE TABLE group_invitations (
      group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
      account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
      app smallint NOT NULL,
      inviter_account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, group_id)
    );

    -- Held (request) rows of a queue, by sender: listing and accepting requests.
    CREATE INDEX queued_messages_held ON queued_messages (account_id, source_account_id)
      WHERE (flags & 16) <> 0;
  `.execute(db);
}

/** Drops everything `up` created. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX queued_messages_held;
    DROP TABLE group_invitations, relationships;
    ALTER TABLE accounts DROP COLUMN requests_policy, DROP COLUMN minor;
  `.execute(db);
}
