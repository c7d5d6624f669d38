// Verification codes (one row per phone number) and link codes.
import { sql, type Kysely, type Transaction } from "kysely";
import type { LinkCodeRow, VerificationCodeRow, WaDatabase } from "./schema.js";

/** A code to store for a number, with the rate-limit window it is counted in. */
export interface IssueCode {
  phone: string;
  codeHash: Uint8Array;
  salt: Uint8Array;
  expiresAt: Date;
  now: Date;
  /** Length of the rate-limit window. */
  windowMs: number;
  /** Codes allowed per number per window. */
  maxRequests: number;
}

/**
 * Stores a new code for a number (replacing any previous one, with its attempts reset) unless the
 * number has used up its window; then returns how long until the window ends.
 */
export async function issueCode(
  db: Kysely<WaDatabase>,
  c: IssueCode,
): Promise<{ issued: true } | { issued: false; retryAfterMs: number }> {
  return db.transaction().execute(async (trx) => {
    await trx
      .insertInto("wa_verification_codes")
      .values({ phone: c.phone, attempts: 0, window_started_at: c.now, window_requests: 0 })
      .onConflict((oc) => oc.column("phone").doNothing())
      .execute();
    const row = await lockCode(trx, c.phone);
    if (!row) throw new Error("verification row vanished");
    let windowStart = row.window_started_at;
    let requests = row.window_requests;
    if (c.now.getTime() - windowStart.getTime() >= c.windowMs) {
      windowStart = c.now;
      requests = 0;
    }
    if (requests >= c.maxRequests) {
      return { issued: false, retryAfterMs: windowStart.getTime() + c.windowMs - c.now.getTime() };
    }
    await trx
      .updateTable("wa_verification_codes")
      .set({
        code_hash: c.codeHash,
        code_salt: c.salt,
        code_expires_at: c.expiresAt,
        attempts: 0,
        window_started_at: windowStart,
        window_requests: requests + 1,
      })
      .where("phone", "=", c.phone)
      .execute();
    return { issued: true };
  });
}

/** Reads and row-locks a number's code row (inside a transaction). */
export function lockCode(
  trx: Transaction<WaDatabase>,
  phone: string,
): Promise<VerificationCodeRow | undefined> {
  return trx
    .selectFrom("wa_verification_codes")
    .selectAll()
    .where("phone", "=", phone)
    .forUpdate()
    .executeTakeFirst();
}

/** Counts a wrong guess; returns the attempts made so far. */
export async function recordWrongAttempt(trx: Transaction<WaDatabase>, phone: string): Promise<number> {
  const r = await trx
    .updateTable("wa_verification_codes")
    .set({ attempts: sql<number>`attempts + 1` })
    .where("phone", "=", phone)
    .returning("attempts")
    .executeTakeFirst();
  return r?.attempts ?? 0;
}

/** Invalidates a number's current code (used, expired or out of attempts); the window stays. */
export async function clearCode(
  trx: Transaction<WaDatabase> | Kysely<WaDatabase>,
  phone: string,
): Promise<void> {
  await trx
    .updateTable("wa_verification_codes")
    .set({ code_hash: null, code_salt: null, code_expires_at: null, attempts: 0 })
    .where("phone", "=", phone)
    .execute();
}

/** A verified code, cleared from its row, kept to put back if the registration it allowed fails. */
export interface ConsumedCode {
  codeHash: Uint8Array;
  salt: Uint8Array;
  expiresAt: Date;
  attempts: number;
}

/** Puts a consumed code back, unless a newer code was issued for the number meanwhile. */
export async function restoreCode(db: Kysely<WaDatabase>, phone: string, code: ConsumedCode): Promise<void> {
  await db
    .updateTable("wa_verification_codes")
    .set({
      code_hash: code.codeHash,
      code_salt: code.salt,
      code_expires_at: code.expiresAt,
      attempts: code.attempts,
    })
    .where("phone", "=", phone)
    .where("code_hash", "is", null)
    .execute();
}

/** Stores a link code (and sweeps expired ones). */
export async function insertLinkCode(
  db: Kysely<WaDatabase>,
  row: { codeHash: Uint8Array; accountId: string; phone: string; expiresAt: Date; now: Date },
): Promise<void> {
  await db.deleteFrom("wa_link_codes").where("expires_at", "<", row.now).execute();
  await db
    .insertInto("wa_link_codes")
    .values({
      code_hash: row.codeHash,
      account_id: row.accountId,
      phone: row.phone,
      expires_at: row.expiresAt,
    })
    .execute();
}

/**
 * Consumes a link code: deletes it and returns it if it existed and had not expired. Run it in a
 * transaction to put the code back (roll back) when linking fails.
 */
export async function takeLinkCode(
  db: Kysely<WaDatabase> | Transaction<WaDatabase>,
  codeHash: Uint8Array,
  now: Date,
): Promise<LinkCodeRow | undefined> {
  const row = await db
    .deleteFrom("wa_link_codes")
    .where("code_hash", "=", codeHash)
    .returningAll()
    .executeTakeFirst();
  if (!row || row.expires_at.getTime() <= now.getTime()) return undefined;
  return row;
}
