import { sql, type Kysely } from "kysely";

/** Tokens, inbox threads, relationships and held message requests. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE ig_tokens (
      token_hash bytea PRIMARY KEY,
      account_id uuid NOT NULL,
      device_id integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX ig_tokens_device ON ig_tokens (account_id, device_id);

    CREATE TABLE ig_threads (
      owner_account_id uuid NOT NULL,
      thread_id text NOT NULL,
      thread_type text NOT NULL CHECK (thread_type IN ('private', 'group')),
      peer_account_id uuid,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_activity_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (owner_account_id, thread_id)
    );
    CREATE INDEX ig_threads_inbox ON ig_threads (owner_account_id, last_activity_at DESC);

    CREATE TABLE ig_relationships (
      owner_account_id uuid NOT NULL,
      peer_account_id uuid NOT NULL,
      thread_id text NOT NULL,
      state text NOT NULL CHECK (state IN ('pending', 'accepted', 'declined')),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (owner_account_id, peer_account_id)
    );
    CREATE INDEX ig_relationships_thread ON ig_relationships (owner_account_id, thread_id);

    CREATE TABLE ig_requests (
      owner_account_id uuid NOT NULL,
      device_id integer NOT NULL,
      server_id uuid NOT NULL,
      peer_account_id uuid NOT NULL,
      thread_id text NOT NULL,
      state text NOT NULL CHECK (state IN ('held', 'released')),
      sequence bigint NOT NULL,
      envelope bytea NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now(),
      delivered_at timestamptz,
      PRIMARY KEY (owner_account_id, device_id, server_id)
    );
    CREATE INDEX ig_requests_peer ON ig_requests (owner_account_id, peer_account_id, state);
    CREATE INDEX ig_requests_undelivered ON ig_requests (owner_account_id, device_id)
      WHERE state = 'released' AND delivered_at IS NULL;
    CREATE INDEX ig_requests_received ON ig_requests (received_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE ig_requests, ig_relationships, ig_threads, ig_tokens`.execute(db);
}
