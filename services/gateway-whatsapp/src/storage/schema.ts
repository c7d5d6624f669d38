// Kysely types of the gateway's own tables (prefixed `wa_`, in the delivery service's database).
import type { Generated, Insertable, Selectable } from "kysely";

/** Verification codes and the per-number request window, one row per phone number. */
export interface WaVerificationCodeTable {
  /** E.164 phone number. */
  phone: string;
  /** SHA-256 of salt ‖ phone ‖ code; null once used or invalidated. */
  code_hash: Uint8Array | null;
  code_salt: Uint8Array | null;
  code_expires_at: Date | null;
  /** Wrong guesses against the current code. */
  attempts: number;
  /** Start of the current rate-limit window and the codes requested in it. */
  window_started_at: Date;
  window_requests: number;
}

/** One-time link codes for companion devices. */
export interface WaLinkCodeTable {
  /** SHA-256 of the code. */
  code_hash: Uint8Array;
  account_id: string;
  phone: string;
  expires_at: Date;
  created_at: Generated<Date>;
}

/** Device bearer tokens, stored only as SHA-256 digests. */
export interface WaDeviceTokenTable {
  token_hash: Uint8Array;
  account_id: string;
  device_id: number;
  /** The account's phone number (its handle), so the device's own JID needs no lookup. */
  phone: string;
  created_at: Generated<Date>;
}

/** The gateway's tables. */
export interface WaDatabase {
  wa_verification_codes: WaVerificationCodeTable;
  wa_link_codes: WaLinkCodeTable;
  wa_device_tokens: WaDeviceTokenTable;
}

export type VerificationCodeRow = Selectable<WaVerificationCodeTable>;
export type NewDeviceTokenRow = Insertable<WaDeviceTokenTable>;
export type DeviceTokenRow = Selectable<WaDeviceTokenTable>;
export type LinkCodeRow = Selectable<WaLinkCodeTable>;
