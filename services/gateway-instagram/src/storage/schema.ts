// The gateway's own tables (prefixed ig_), next to the delivery service's in the same database.
import type { ColumnType, Selectable } from "kysely";

type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamp with a database default (optional on insert). */
type DefaultTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;

/** Access tokens, stored only as SHA-256 digests. */
export interface IgTokenTable {
  token_hash: Buffer;
  account_id: string;
  device_id: number;
  created_at: DefaultTimestamp;
}

/** Threads in a user's inbox (one-to-one threads by peer, group threads by group id). */
export interface IgThreadTable {
  owner_account_id: string;
  thread_id: string;
  thread_type: "private" | "group";
  /** The other account of a one-to-one thread (the owner's own id for a thread with oneself). */
  peer_account_id: string | null;
  created_at: DefaultTimestamp;
  last_activity_at: Timestamp;
}

/** The state of a user towards a peer who may message them. */
export type RelationshipState = "pending" | "accepted" | "declined";

/** Whether an Instagram user has accepted one-to-one messages from a peer (of any app). */
export interface IgRelationshipTable {
  owner_account_id: string;
  peer_account_id: string;
  /** The one-to-one thread id of owner and peer (derived; stored for lookups by thread). */
  thread_id: string;
  state: RelationshipState;
  updated_at: Timestamp;
}

/** `held`: part of a pending request; `released`: accepted, to be delivered until the device acks. */
export type RequestItemState = "held" | "released";

/** Envelopes of message requests, per recipient device, taken off the delivery queue. */
export interface IgRequestTable {
  owner_account_id: string;
  device_id: number;
  server_id: string;
  peer_account_id: string;
  thread_id: string;
  state: RequestItemState;
  /** The device's delivery queue position, for ordering. */
  sequence: number;
  /** The whole Envelope, protobuf-encoded (ciphertext and routing metadata only). */
  envelope: Buffer;
  received_at: DefaultTimestamp;
  /** When a released item was last streamed to the device (null: not yet). */
  delivered_at: Timestamp | null;
}

/** The gateway's tables. */
export interface IgDatabase {
  ig_tokens: IgTokenTable;
  ig_threads: IgThreadTable;
  ig_relationships: IgRelationshipTable;
  ig_requests: IgRequestTable;
}

export type IgThreadRow = Selectable<IgThreadTable>;
export type IgRequestRow = Selectable<IgRequestTable>;
