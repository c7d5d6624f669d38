import { AppError, Code } from "@switchboard/errors";
import type { Kysely, Transaction } from "kysely";
import type { AccountRow, Database, DeviceRow } from "./schema.js";
import { isUniqueViolation } from "./pg-errors.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A device as the directory exposes it (no secrets, no keys). */
export interface DeviceSummary {
  accountId: string;
  deviceId: number;
  registrationId: number;
  name: string;
  createdAt: Date;
}

/** Fields of a new account and its primary device. */
export interface NewAccount {
  id: string;
  app: number;
  providerId: string;
  handle: string;
  registrationId: number;
  deviceName: string;
  passwordHash: string;
  /** Flagged a minor by the app's age signal (default false). */
  minor?: boolean;
  /** `accounts.requests_policy` (default 0: app default). */
  requestsPolicy?: number;
}

const toSummary = (
  row: Pick<DeviceRow, "account_id" | "device_id" | "registration_id" | "name" | "created_at">,
): DeviceSummary => ({
  accountId: row.account_id,
  deviceId: row.device_id,
  registrationId: row.registration_id,
  name: row.name,
  createdAt: row.created_at,
});

/**
 * Inserts an account with its primary device (device 1) in one transaction.
 * Throws ALREADY_EXISTS (HANDLE_TAKEN) when the handle is registered in that app.
 */
export async function insertAccount(
  db: Kysely<Database>,
  a: NewAccount,
): Promise<{ account: AccountRow; device: DeviceSummary }> {
  try {
    return await db.transaction().execute(async (trx) => {
      const account = await trx
        .insertInto("accounts")
        .values({
          id: a.id,
          app: a.app,
          provider_id: a.providerId,
          handle: a.handle,
          minor: a.minor ?? false,
          requests_policy: a.requestsPolicy ?? 0,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      const device = await trx
        .insertInto("devices")
        .values({
          account_id: a.id,
          device_id: 1,
          app: a.app,
          registration_id: a.registrationId,
          name: a.deviceName,
          password_hash: a.passwordHash,
          identity_key: null,
          signed_prekey_id: null,
          signed_prekey: null,
          signed_prekey_signature: null,
          last_resort_kyber_id: null,
          last_resort_kyber: null,
          last_resort_kyber_signature: null,
        })
        .returning(["account_id", "device_id", "registration_id", "name", "created_at"])
        .executeTakeFirstOrThrow();
      return { account, device: toSummary(device) };
    });
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new AppError(Code.AlreadyExists, "HANDLE_TAKEN", "an account with this handle already exists", {
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Re-registers an existing handle (a reinstall the app re-verified) in one transaction: device 1
 * takes the new registration id, password and name and loses its keys; every linked device is
 * deleted; all of the account's queued messages are deleted. Returns undefined when the handle
 * is not registered, else the account, its primary device and the removed device ids.
 */
export async function reregisterAccount(
  db: Kysely<Database>,
  a: Omit<NewAccount, "id">,
): Promise<{ account: AccountRow; device: DeviceSummary; removedDeviceIds: number[] } | undefined> {
  return db.transaction().execute(async (trx) => {
    const account = await trx
      .selectFrom("accounts")
      .selectAll()
      .where("app", "=", a.app)
      .where("provider_id", "=", a.providerId)
      .where("handle", "=", a.handle)
      .forUpdate()
      .executeTakeFirst();
    if (!account) return undefined;
    if (a.minor !== undefined || a.requestsPolicy !== undefined) {
      await trx
        .updateTable("accounts")
        .set({
          minor: a.minor ?? account.minor,
          requests_policy: a.requestsPolicy ?? account.requests_policy,
        })
        .where("id", "=", account.id)
        .execute();
    }
    const removed = await trx
      .deleteFrom("devices")
      .where("account_id", "=", account.id)
      .where("device_id", ">", 1)
      .returning("device_id")
      .execute();
    await trx.deleteFrom("queued_messages").where("account_id", "=", account.id).execute();
    await trx.deleteFrom("one_time_prekeys").where("account_id", "=", account.id).execute();
    await trx.deleteFrom("kyber_prekeys").where("account_id", "=", account.id).execute();
    const device = await trx
      .updateTable("devices")
      .set({
        registration_id: a.registrationId,
        password_hash: a.passwordHash,
        name: a.deviceName,
        identity_key: null,
        signed_prekey_id: null,
        signed_prekey: null,
        signed_prekey_signature: null,
        last_resort_kyber_id: null,
        last_resort_kyber: null,
        last_resort_kyber_signature: null,
      })
      .where("account_id", "=", account.id)
      .where("device_id", "=", 1)
      .returning(["account_id", "device_id", "registration_id", "name", "created_at"])
      .executeTakeFirstOrThrow();
    return { account, device: toSummary(device), removedDeviceIds: removed.map((r) => r.device_id) };
  });
}

/** The account with this id, or undefined. */
export async function findAccountById(db: Db, id: string): Promise<AccountRow | undefined> {
  return db.selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
}

/** The account with this normalised handle in an app, or undefined. */
export async function findAccountByHandle(
  db: Db,
  app: number,
  providerId: string,
  handle: string,
): Promise<AccountRow | undefined> {
  return db
    .selectFrom("accounts")
    .selectAll()
    .where("app", "=", app)
    .where("provider_id", "=", providerId)
    .where("handle", "=", handle)
    .executeTakeFirst();
}

/** Accounts by id (missing ids are simply absent). */
export async function findAccountsByIds(db: Db, ids: readonly string[]): Promise<AccountRow[]> {
  if (ids.length === 0) return [];
  return db
    .selectFrom("accounts")
    .selectAll()
    .where("id", "in", [...ids])
    .execute();
}

/** Current devices of the given accounts, ordered by account and device id. */
export async function listDevices(db: Db, accountIds: readonly string[]): Promise<DeviceSummary[]> {
  if (accountIds.length === 0) return [];
  const rows = await db
    .selectFrom("devices")
    .select(["account_id", "device_id", "registration_id", "name", "created_at"])
    .where("account_id", "in", [...accountIds])
    .orderBy("account_id")
    .orderBy("device_id")
    .execute();
  return rows.map(toSummary);
}

/**
 * Links a new device to an account, numbering it with the account's next device id (never
 * reused). Throws NOT_FOUND (ACCOUNT_NOT_FOUND), or RESOURCE_EXHAUSTED (TOO_MANY_DEVICES) when the
 * account already has `maxDevices` devices.
 */
export async function insertDevice(
  db: Kysely<Database>,
  d: { accountId: string; registrationId: number; name: string; passwordHash: string; maxDevices: number },
): Promise<DeviceSummary> {
  return db.transaction().execute(async (trx) => {
    const account = await trx
      .selectFrom("accounts")
      .select(["app", "next_device_id"])
      .where("id", "=", d.accountId)
      .forUpdate()
      .executeTakeFirst();
    if (!account) throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${d.accountId} not found`);
    const { count } = await trx
      .selectFrom("devices")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("account_id", "=", d.accountId)
      .executeTakeFirstOrThrow();
    if (Number(count) >= d.maxDevices) {
      throw new AppError(
        Code.ResourceExhausted,
        "TOO_MANY_DEVICES",
        `an account may have at most ${d.maxDevices} devices`,
      );
    }
    const deviceId = account.next_device_id;
    await trx
      .updateTable("accounts")
      .set({ next_device_id: deviceId + 1 })
      .where("id", "=", d.accountId)
      .execute();
    const row = await trx
      .insertInto("devices")
      .values({
        account_id: d.accountId,
        device_id: deviceId,
        app: account.app,
        registration_id: d.registrationId,
        name: d.name,
        password_hash: d.passwordHash,
        identity_key: null,
        signed_prekey_id: null,
        signed_prekey: null,
        signed_prekey_signature: null,
        last_resort_kyber_id: null,
        last_resort_kyber: null,
        last_resort_kyber_signature: null,
      })
      .returning(["account_id", "device_id", "registration_id", "name", "created_at"])
      .executeTakeFirstOrThrow();
    return toSummary(row);
  });
}

/**
 * Deletes a device with its keys and its whole queue in one transaction.
 * Returns false when the device did not exist.
 */
export async function deleteDevice(
  db: Kysely<Database>,
  accountId: string,
  deviceId: number,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const deleted = await trx
      .deleteFrom("devices")
      .where("account_id", "=", accountId)
      .where("device_id", "=", deviceId)
      .executeTakeFirst();
    await trx
      .deleteFrom("queued_messages")
      .where("account_id", "=", accountId)
      .where("device_id", "=", deviceId)
      .execute();
    return Number(deleted.numDeletedRows) > 0;
  });
}

/** What authenticating a device needs: its password hash and app. */
export async function findDeviceCredential(
  db: Db,
  accountId: string,
  deviceId: number,
): Promise<{ passwordHash: string; app: number } | undefined> {
  const row = await db
    .selectFrom("devices")
    .select(["password_hash", "app"])
    .where("account_id", "=", accountId)
    .where("device_id", "=", deviceId)
    .executeTakeFirst();
  return row && { passwordHash: row.password_hash, app: row.app };
}
