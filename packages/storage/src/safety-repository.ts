import { AppError, Code } from "@switchboard/errors";
import type { Kysely, Selectable } from "kysely";
import type { Database, ReportTable, UnidentifiedAccessTable } from "./schema.js";
import { isUniqueViolation } from "./pg-errors.js";

const bytes = (b: Uint8Array): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * Returns the server secret `name`, inserting `candidate` first if none is stored (insert-if-absent:
 * instances starting together all end up with the one value that won).
 */
export async function getOrCreateServerKey(
  db: Kysely<Database>,
  name: string,
  candidate: Uint8Array,
): Promise<Uint8Array> {
  await db
    .insertInto("server_keys")
    .values({ name, secret: buf(candidate) })
    .onConflict((oc) => oc.column("name").doNothing())
    .execute();
  const row = await db
    .selectFrom("server_keys")
    .select("secret")
    .where("name", "=", name)
    .executeTakeFirstOrThrow();
  return bytes(row.secret);
}

/** A verified report to record. */
export interface NewReport {
  id: string;
  app: number;
  reporterAccountId: string;
  reporterDeviceId: number;
  messageId: string;
  senderAccountId: string;
  senderDeviceId: number;
  sealedSender: boolean;
  serverTimestampMs: number;
  plaintext: Uint8Array;
  reason: string;
}

/** A stored report. */
export type ReportRow = Selectable<ReportTable>;

/** Records a verified report. Throws ALREADY_EXISTS (ALREADY_REPORTED) for a second report of one message. */
export async function insertReport(db: Kysely<Database>, r: NewReport): Promise<void> {
  try {
    await db
      .insertInto("reports")
      .values({
        id: r.id,
        app: r.app,
        reporter_account_id: r.reporterAccountId,
        reporter_device_id: r.reporterDeviceId,
        message_id: r.messageId,
        sender_account_id: r.senderAccountId,
        sender_device_id: r.senderDeviceId,
        sealed_sender: r.sealedSender,
        server_timestamp_ms: r.serverTimestampMs,
        plaintext: buf(r.plaintext),
        reason: r.reason,
      })
      .execute();
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError(Code.AlreadyExists, "ALREADY_REPORTED", "this message was already reported", {
        cause: err,
      });
    throw err;
  }
}

/** Reports against a sender account, newest first. */
export async function listReportsAgainst(
  db: Kysely<Database>,
  senderAccountId: string,
): Promise<ReportRow[]> {
  const rows = await db
    .selectFrom("reports")
    .selectAll()
    .where("sender_account_id", "=", senderAccountId)
    .orderBy("created_at", "desc")
    .execute();
  return rows.map((r) => ({
    ...r,
    plaintext: bytes(r.plaintext),
    server_timestamp_ms: Number(r.server_timestamp_ms),
  }));
}

/** An account's sealed-sender access setting. */
export interface UnidentifiedAccess {
  accountId: string;
  app: number;
  /** SHA-256 of the access key, or undefined. */
  accessKeyHash: Uint8Array | undefined;
  /**
   * The access key itself (for combined multi-recipient keys), or undefined: none, or set before
   * migration 0006.
   */
  accessKey?: Uint8Array | undefined;
  unrestricted: boolean;
}

/** Sets (replaces) an account's sealed-sender access. */
export async function setUnidentifiedAccess(db: Kysely<Database>, a: UnidentifiedAccess): Promise<void> {
  const values = {
    access_key_hash: a.accessKeyHash ? buf(a.accessKeyHash) : null,
    access_key: a.accessKey ? buf(a.accessKey) : null,
    unrestricted: a.unrestricted,
    updated_at: new Date(),
  };
  await db
    .insertInto("unidentified_access")
    .values({ account_id: a.accountId, app: a.app, ...values })
    .onConflict((oc) => oc.column("account_id").doUpdateSet(values))
    .execute();
}

/** Removes an account's sealed-sender access: every sealed send to it is refused. */
export async function deleteUnidentifiedAccess(db: Kysely<Database>, accountId: string): Promise<void> {
  await db.deleteFrom("unidentified_access").where("account_id", "=", accountId).execute();
}

/** An account's sealed-sender access, or undefined when it has none (sealed sender disabled). */
export async function findUnidentifiedAccess(
  db: Kysely<Database>,
  accountId: string,
): Promise<UnidentifiedAccess | undefined> {
  const row = await db
    .selectFrom("unidentified_access")
    .selectAll()
    .where("account_id", "=", accountId)
    .executeTakeFirst();
  return row ? unidentifiedAccessOf(row) : undefined;
}

const unidentifiedAccessOf = (row: Selectable<UnidentifiedAccessTable>): UnidentifiedAccess => ({
  accountId: row.account_id,
  app: row.app,
  accessKeyHash: row.access_key_hash ? bytes(row.access_key_hash) : undefined,
  accessKey: row.access_key ? bytes(row.access_key) : undefined,
  unrestricted: row.unrestricted,
});

/**
 * The sealed-sender access of several accounts in one query, keyed by account id; accounts
 * without a row (sealed sender disabled, or unknown) are absent.
 */
export async function findUnidentifiedAccessMany(
  db: Kysely<Database>,
  accountIds: readonly string[],
): Promise<Map<string, UnidentifiedAccess>> {
  const out = new Map<string, UnidentifiedAccess>();
  if (accountIds.length === 0) return out;
  const rows = await db
    .selectFrom("unidentified_access")
    .selectAll()
    .where("account_id", "in", [...accountIds])
    .execute();
  for (const row of rows) out.set(row.account_id, unidentifiedAccessOf(row));
  return out;
}

/** A device's uploaded identity public key, or undefined (no such device, or no keys uploaded yet). */
export async function findIdentityKey(
  db: Kysely<Database>,
  accountId: string,
  deviceId: number,
): Promise<Uint8Array | undefined> {
  const row = await db
    .selectFrom("devices")
    .select("identity_key")
    .where("account_id", "=", accountId)
    .where("device_id", "=", deviceId)
    .executeTakeFirst();
  return row?.identity_key ? bytes(row.identity_key) : undefined;
}
