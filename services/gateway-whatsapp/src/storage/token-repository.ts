// Device bearer tokens, stored as SHA-256 digests.
import type { Kysely, Transaction } from "kysely";
import type { DeviceTokenRow, NewDeviceTokenRow, WaDatabase } from "./schema.js";

/**
 * Stores a device's token, replacing any earlier token of the same device (device ids can be
 * reused after a removal). Run it inside a transaction.
 */
export async function insertDeviceToken(trx: Transaction<WaDatabase>, row: NewDeviceTokenRow): Promise<void> {
  await trx
    .deleteFrom("wa_device_tokens")
    .where("account_id", "=", row.account_id)
    .where("device_id", "=", row.device_id)
    .execute();
  await trx.insertInto("wa_device_tokens").values(row).execute();
}

/** Revokes every token of an account (after a re-registration replaced its devices). */
export async function deleteAccountTokens(trx: Transaction<WaDatabase>, accountId: string): Promise<void> {
  await trx.deleteFrom("wa_device_tokens").where("account_id", "=", accountId).execute();
}

/** The device a token digest belongs to, if any. */
export function findDeviceToken(
  db: Kysely<WaDatabase>,
  tokenHash: Uint8Array,
): Promise<DeviceTokenRow | undefined> {
  return db.selectFrom("wa_device_tokens").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst();
}
