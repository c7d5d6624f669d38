import { AppError, Code } from "@switchboard/errors";
import type { Kysely, Transaction } from "kysely";
import { isUniqueViolation } from "./pg-errors.js";
import type { Database, ProviderRow } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/**
 * Registers a third-party provider with the SHA-256 digest of its bearer token. Throws
 * ALREADY_EXISTS (PROVIDER_EXISTS) when the id is taken (revoked providers keep their id).
 */
export async function insertProvider(
  db: Db,
  p: { id: string; displayName: string; tokenHash: Uint8Array },
): Promise<ProviderRow> {
  try {
    return await db
      .insertInto("providers")
      .values({ id: p.id, display_name: p.displayName, token_hash: p.tokenHash, revoked_at: null })
      .returningAll()
      .executeTakeFirstOrThrow();
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError(Code.AlreadyExists, "PROVIDER_EXISTS", `provider ${p.id} already exists`, {
        cause: err,
      });
    throw err;
  }
}

/** The provider whose token hashes to `tokenHash` (revoked ones included), or undefined. */
export async function findProviderByTokenHash(
  db: Db,
  tokenHash: Uint8Array,
): Promise<ProviderRow | undefined> {
  return db.selectFrom("providers").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst();
}

/** Marks a provider revoked (idempotent). Returns the row, or undefined for an unknown id. */
export async function revokeProvider(db: Db, id: string, at: Date): Promise<ProviderRow | undefined> {
  const row = await db
    .updateTable("providers")
    .set({ revoked_at: at })
    .where("id", "=", id)
    .where("revoked_at", "is", null)
    .returningAll()
    .executeTakeFirst();
  return row ?? db.selectFrom("providers").selectAll().where("id", "=", id).executeTakeFirst();
}

/** Every registered provider, revoked ones included, ordered by id. */
export async function listProviders(db: Db): Promise<ProviderRow[]> {
  return db.selectFrom("providers").selectAll().orderBy("id").execute();
}

/**
 * Sets an account's opt-in to third-party reachability. Returns the stored value, or undefined
 * when the account does not exist.
 */
export async function setThirdPartyReachable(
  db: Db,
  accountId: string,
  reachable: boolean,
): Promise<boolean | undefined> {
  const row = await db
    .updateTable("accounts")
    .set({ third_party_reachable: reachable })
    .where("id", "=", accountId)
    .returning("third_party_reachable")
    .executeTakeFirst();
  return row?.third_party_reachable;
}

/**
 * Of `accountIds`, those that third-party providers' users must not reach: accounts of our own
 * apps (app != third party) that have not opted in. One query for the whole batch.
 */
export async function findUnreachableFromThirdParty(
  db: Db,
  accountIds: readonly string[],
  thirdPartyApp: number,
): Promise<Set<string>> {
  if (accountIds.length === 0) return new Set();
  const rows = await db
    .selectFrom("accounts")
    .select("id")
    .where("id", "in", [...accountIds])
    .where("app", "<>", thirdPartyApp)
    .where("third_party_reachable", "=", false)
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** The provider with this registry id (revoked ones included), or undefined. */
export async function findProviderById(db: Db, id: string): Promise<ProviderRow | undefined> {
  return db.selectFrom("providers").selectAll().where("id", "=", id).executeTakeFirst();
}

/** Of `providerIds`, those that are registered and revoked. One query. */
export async function findRevokedProviders(db: Db, providerIds: readonly string[]): Promise<Set<string>> {
  if (providerIds.length === 0) return new Set();
  const rows = await db
    .selectFrom("providers")
    .select("id")
    .where("id", "in", [...providerIds])
    .where("revoked_at", "is not", null)
    .execute();
  return new Set(rows.map((r) => r.id));
}
