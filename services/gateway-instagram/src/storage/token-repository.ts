import type { Kysely } from "kysely";
import type { IgDatabase } from "./schema.js";

/** A device an access token acts as. */
export interface TokenPrincipal {
  accountId: string;
  deviceId: number;
}

/** Stores a token digest for a device. */
export async function insertToken(
  db: Kysely<IgDatabase>,
  tokenHash: Buffer,
  principal: TokenPrincipal,
): Promise<void> {
  await db
    .insertInto("ig_tokens")
    .values({ token_hash: tokenHash, account_id: principal.accountId, device_id: principal.deviceId })
    .execute();
}

/** The device a token digest belongs to, or undefined. */
export async function findTokenPrincipal(
  db: Kysely<IgDatabase>,
  tokenHash: Buffer,
): Promise<TokenPrincipal | undefined> {
  const row = await db
    .selectFrom("ig_tokens")
    .select(["account_id", "device_id"])
    .where("token_hash", "=", tokenHash)
    .executeTakeFirst();
  return row && { accountId: row.account_id, deviceId: row.device_id };
}

/** Revokes every token of a device; returns how many there were. */
export async function deleteDeviceTokens(db: Kysely<IgDatabase>, principal: TokenPrincipal): Promise<number> {
  const r = await db
    .deleteFrom("ig_tokens")
    .where("account_id", "=", principal.accountId)
    .where("device_id", "=", principal.deviceId)
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}
