import { sql, type Kysely } from "kysely";

/** Initial schema: directory, key directory, per-device queues, idempotency log, groups. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE accounts (
      id uuid PRIMARY KEY,
      app smallint NOT NULL,
      provider_id text NOT NULL DEFAULT '',
      handle text NOT NULL,
      next_device_id integer NOT NULL DEFAULT 2,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (app, provider_id, handle)
    );

    CREATE TABLE devices (
      account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
      device_id integer NOT NULL,
      app smallint NOT NULL,
      registration_id integer NOT NULL,
      name text NOT NULL DEFAULT '',
      password_hash text NOT NULL,
      identity_key bytea,
      signed_prekey_id integer,
      signed_prekey bytea,
      signed_prekey_signature bytea,
      last_resort_kyber_id integer,
      last_resort_kyber bytea,
      last_resort_kyber_signature bytea,
      queue_seq bigint NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, device_id)
    );

    CREATE TABLE one_time_prekeys (
      account_id uuid NOT NULL,
      device_id integer NOT NULL,
      app smallint NOT NULL,
      key_id integer NOT NULL,
      public_key bytea NOT NULL,
      PRIMARY KEY (account_id, device_id, key_id),
      FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
    );

    CREATE TABLE kyber_prekeys (
      account_id uuid NOT NULL,
      device_id integer NOT NULL,
      app smallint NOT NULL,
      key_id integer NOT NULL,
      public_key bytea NOT NULL,
      signature bytea NOT NULL,
      PRIMARY KEY (account_id, device_id, key_id),
      FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
    );

    -- One row per (recipient device, message). No foreign key to devices on purpose: device
    -- removal deletes the queue explicitly, and the hot insert path avoids the FK check.
    CREATE TABLE queued_messages (
      account_id uuid NOT NULL,
      device_id integer NOT NULL,
      seq bigint NOT NULL,
      message_id uuid NOT NULL,
      app smallint NOT NULL,
      type smallint NOT NULL,
      source_account_id uuid,
      source_device_id integer,
      source_app smallint NOT NULL,
      source_provider_id text NOT NULL DEFAULT '',
      source_registration_id integer NOT NULL DEFAULT 0,
      client_message_id text NOT NULL,
      client_timestamp_ms bigint NOT NULL,
      server_timestamp_ms bigint NOT NULL,
      expires_at_ms bigint NOT NULL,
      flags smallint NOT NULL DEFAULT 0,
      group_id uuid,
      report_tag bytea,
      content bytea,
      payload_id uuid,
      PRIMARY KEY (account_id, device_id, seq)
    );
    CREATE UNIQUE INDEX queued_messages_by_id ON queued_messages (account_id, device_id, message_id);
    CREATE INDEX queued_messages_expiry ON queued_messages (expires_at_ms);
    CREATE INDEX queued_messages_payload ON queued_messages (payload_id) WHERE payload_id IS NOT NULL;

    CREATE TABLE group_payloads (
      message_id uuid PRIMARY KEY,
      app smallint NOT NULL,
      content bytea NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE send_log (
      sender_account_id uuid NOT NULL,
      sender_device_id integer NOT NULL,
      client_message_id text NOT NULL,
      app smallint NOT NULL,
      message_id uuid NOT NULL,
      server_timestamp_ms bigint NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (sender_account_id, sender_device_id, client_message_id)
    );
    CREATE INDEX send_log_created ON send_log (created_at);

    CREATE TABLE groups (
      id uuid PRIMARY KEY,
      creator_account_id uuid NOT NULL,
      app smallint NOT NULL,
      revision bigint NOT NULL DEFAULT 1,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE group_members (
      group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
      account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
      app smallint NOT NULL,
      added_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (group_id, account_id)
    );
    CREATE INDEX group_members_account ON group_members (account_id);
  `.execute(db);
}

/** Drops everything `up` created. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE group_members, groups, send_log, group_payloads, queued_messages,
      kyber_prekeys, one_time_prekeys, devices, accounts;
  `.execute(db);
}
