import { sql, type Kysely } from "kysely";
import type { GatewayDatabase, TokenRow } from "./schema.js";

/** Allocates the next numeric user id ("100000", "100001", ...). */
export async function nextUserId(db: Kysely<GatewayDatabase>): Promise<string> {
  const r = await sql<{ id: string }>`SELECT nextval('ms_user_id_seq')::text AS id`.execute(db);
  const id = r.rows[0]?.id;
  if (id === undefined) throw new Error("nextval returned no row");
  return id;
}

/** Stores an issued token by its digest. */
export async function insertToken(
  db: Kysely<GatewayDatabase>,
  row: { digest: Buffer; accountId: string; deviceId: number; userId: string },
): Promise<void> {
  await db
    .insertInto("ms_tokens")
    .values({
      token_sha256: row.digest,
      account_id: row.accountId,
      device_id: row.deviceId,
      user_id: row.userId,
    })
    .execute();
}

/** The token row with this digest, or undefined. */
export async function findToken(db: Kysely<GatewayDatabase>, digest: Buffer): Promise<TokenRow | undefined> {
  return db.selectFrom("ms_tokens").selectAll().where("token_sha256", "=", digest).executeTakeFirst();
}

/** Deletes every token of one device; returns their digests (to drop from caches). */
export async function deleteDeviceTokens(
  db: Kysely<GatewayDatabase>,
  accountId: string,
  deviceId: number,
): Promise<Buffer[]> {
  const rows = await db
    .deleteFrom("ms_tokens")
    .where("account_id", "=", accountId)
    .where("device_id", "=", deviceId)
    .returning("token_sha256")
    .execute();
  return rows.map((r) => r.token_sha256);
}
