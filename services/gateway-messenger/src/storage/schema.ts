import type { Generated, Selectable } from "kysely";

/** `ms_tokens`: one row per issued access token, keyed by the token's SHA-256 digest. */
export interface TokenTable {
  token_sha256: Buffer;
  /** Service-wide account id (delivery's). */
  account_id: string;
  device_id: number;
  /** The Messenger-style numeric user id, as text ("100004"). */
  user_id: string;
  created_at: Generated<Date>;
}

/** The gateway's tables (all prefixed `ms_`; they share the delivery service's database). */
export interface GatewayDatabase {
  ms_tokens: TokenTable;
}

export type TokenRow = Selectable<TokenTable>;
