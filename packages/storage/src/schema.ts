import type { ColumnType, Generated, Insertable, Selectable } from "kysely";

/**
 * Kysely table types of the delivery database. Every row belongs to exactly one app (the `app`
 * column, or its account's app), so one app's state can be exported alone. Tables that grow with
 * traffic lead with the recipient `account_id`, the distribution key for sharding (see docs).
 */
export interface Database {
  accounts: AccountTable;
  devices: DeviceTable;
  one_time_prekeys: OneTimePreKeyTable;
  kyber_prekeys: KyberPreKeyTable;
  queued_messages: QueuedMessageTable;
  group_payloads: GroupPayloadTable;
  send_log: SendLogTable;
  groups: GroupTable;
  group_members: GroupMemberTable;
  relationships: RelationshipTable;
  group_invitations: GroupInvitationTable;
  providers: ProviderTable;
  server_keys: ServerKeyTable;
  reports: ReportTable;
  unidentified_access: UnidentifiedAccessTable;
}

/** Timestamps are stored as `timestamptz` and read back as `Date`. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface AccountTable {
  id: string;
  app: number;
  provider_id: Generated<string>;
  /** Normalised handle: E.164, decimal id, or lower-case username. */
  handle: string;
  next_device_id: Generated<number>;
  created_at: Timestamp;
  /** Opt-in: reachable from third-party providers' users (off by default; migration 0002). */
  third_party_reachable: Generated<boolean>;
  /** Flagged a minor at registration (migration 0003); never shown to other accounts. */
  minor: Generated<boolean>;
  /** How messages from strangers are treated: 0 app default, 1 hold, 2 deliver marked (0003). */
  requests_policy: Generated<number>;
}

export interface DeviceTable {
  account_id: string;
  device_id: number;
  app: number;
  registration_id: number;
  name: Generated<string>;
  password_hash: string;
  identity_key: Uint8Array | null;
  signed_prekey_id: number | null;
  signed_prekey: Uint8Array | null;
  signed_prekey_signature: Uint8Array | null;
  last_resort_kyber_id: number | null;
  last_resort_kyber: Uint8Array | null;
  last_resort_kyber_signature: Uint8Array | null;
  /** Last sequence number handed out for this device's queue. */
  queue_seq: Generated<number>;
  created_at: Timestamp;
}

export interface OneTimePreKeyTable {
  account_id: string;
  device_id: number;
  app: number;
  key_id: number;
  public_key: Uint8Array;
}

export interface KyberPreKeyTable {
  account_id: string;
  device_id: number;
  app: number;
  key_id: number;
  public_key: Uint8Array;
  signature: Uint8Array;
}

export interface QueuedMessageTable {
  account_id: string;
  device_id: number;
  seq: number;
  message_id: string;
  app: number;
  type: number;
  source_account_id: string | null;
  source_device_id: number | null;
  source_app: number;
  source_provider_id: string;
  source_registration_id: number;
  client_message_id: string;
  client_timestamp_ms: number;
  server_timestamp_ms: number;
  expires_at_ms: number;
  /** Bit set: 1 urgent, 2 forwarded, 16 held request, 32 message request, 64 no delivery receipt. */
  flags: number;
  group_id: string | null;
  report_tag: Uint8Array | null;
  /** Per-device ciphertext (one-to-one). Null when `payload_id` points to a shared payload. */
  content: Uint8Array | null;
  payload_id: string | null;
}

export interface GroupPayloadTable {
  message_id: string;
  app: number;
  content: Uint8Array;
  created_at: Timestamp;
}

export interface SendLogTable {
  sender_account_id: string;
  sender_device_id: number;
  client_message_id: string;
  app: number;
  message_id: string;
  server_timestamp_ms: number;
  created_at: Timestamp;
}

export interface GroupTable {
  id: string;
  creator_account_id: string;
  app: number;
  revision: Generated<number>;
  created_at: Timestamp;
}

export interface GroupMemberTable {
  group_id: string;
  account_id: string;
  app: number;
  added_at: Timestamp;
}

/** A registered third-party provider (migration 0002). The token is stored only as a hash. */
export interface ProviderTable {
  /** Registry id, `[a-z0-9][a-z0-9-]{0,31}`; the `provider_id` of its accounts' handles. */
  id: string;
  display_name: string;
  /** SHA-256 of the bearer token. */
  token_hash: Uint8Array;
  created_at: Timestamp;
  revoked_at: Date | null;
}

/** How `owner_account_id` treats `peer_account_id` (migration 0003): 1 accepted, 2 blocked. */
export interface RelationshipTable {
  owner_account_id: string;
  peer_account_id: string;
  /** The owner's app. */
  app: number;
  state: number;
  updated_at: Timestamp;
}

/** A group invitation held until the invitee accepts or declines it (migration 0003). */
export interface GroupInvitationTable {
  group_id: string;
  account_id: string;
  /** The invitee's app. */
  app: number;
  inviter_account_id: string;
  created_at: Timestamp;
}

/** A server secret shared by every delivery instance (migration 0004): franking key, sealed-sender keys. */
export interface ServerKeyTable {
  name: string;
  secret: Uint8Array;
  created_at: Timestamp;
}

/** A verified abuse report (migration 0004): the reporter revealed `plaintext` with a franking proof. */
export interface ReportTable {
  id: string;
  /** The reporter's app. */
  app: number;
  reporter_account_id: string;
  reporter_device_id: number;
  message_id: string;
  sender_account_id: string;
  sender_device_id: number;
  sealed_sender: Generated<boolean>;
  server_timestamp_ms: number;
  plaintext: Uint8Array;
  reason: Generated<string>;
  created_at: Timestamp;
  /** Moderation (migration 0005): 1 dismissed, 2 actioned; null while the report is open. */
  decision: number | null;
  /** The moderator's note; set with `decision`. */
  resolution_note: string | null;
  /** The name of the moderator who decided; set with `decision`. */
  resolved_by: string | null;
  /** When the report was resolved; null while open. */
  resolved_at: Date | null;
}

/** Who may send sealed-sender messages to an account (migration 0004). Only a hash of the key. */
export interface UnidentifiedAccessTable {
  account_id: string;
  app: number;
  /** SHA-256 of the 16-byte unidentified access key; null when only `unrestricted` applies. */
  access_key_hash: Uint8Array | null;
  /**
   * The 16-byte access key itself (migration 0006), needed to check the combined (XOR) key of
   * multi-recipient sealed sends; null when only `unrestricted` applies or set before 0006.
   */
  access_key: Uint8Array | null;
  unrestricted: Generated<boolean>;
  updated_at: Timestamp;
}

export type AccountRow = Selectable<AccountTable>;
export type ProviderRow = Selectable<ProviderTable>;
export type DeviceRow = Selectable<DeviceTable>;
export type NewDeviceRow = Insertable<DeviceTable>;
export type QueuedMessageRow = Selectable<QueuedMessageTable>;
export type NewQueuedMessageRow = Insertable<QueuedMessageTable>;
export type GroupRow = Selectable<GroupTable>;
