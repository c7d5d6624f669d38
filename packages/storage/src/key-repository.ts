import { AppError, Code } from "@switchboard/errors";
import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** A public pre-key as stored: id, key bytes and (for signed keys) the identity signature. */
export interface StoredPreKey {
  keyId: number;
  publicKey: Uint8Array;
  signature?: Uint8Array;
}

/** Keys to store for one device; unset fields are left unchanged. */
export interface KeyUpload {
  identityKey?: Uint8Array;
  signedPreKey?: StoredPreKey;
  oneTimePreKeys: readonly StoredPreKey[];
  kyberPreKeys: readonly StoredPreKey[];
  lastResortKyberPreKey?: StoredPreKey;
}

/** Remaining one-time keys of a device. */
export interface PreKeyCounts {
  oneTime: number;
  kyber: number;
}

/** One device's bundle, with the one-time keys this fetch consumed. */
export interface ClaimedBundle {
  deviceId: number;
  registrationId: number;
  identityKey: Uint8Array;
  signedPreKey: StoredPreKey;
  oneTimePreKey?: StoredPreKey;
  kyberPreKey: StoredPreKey;
  kyberIsLastResort: boolean;
}

const bytes = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * Stores a device's keys in one transaction. One-time keys with an id already stored replace the
 * old key. A changed identity key deletes the device's stored one-time keys first (they were signed
 * by the old identity) and requires a new signed pre-key and last-resort key in the same upload. Throws NOT_FOUND (DEVICE_NOT_FOUND), FAILED_PRECONDITION (KEYS_INCOMPLETE) when the
 * device would be left without an identity key, signed pre-key or last-resort key, and
 * RESOURCE_EXHAUSTED (TOO_MANY_PREKEYS) past `maxStored` one-time keys of a kind.
 */
export async function storeKeys(
  db: Kysely<Database>,
  device: { accountId: string; deviceId: number },
  upload: KeyUpload,
  maxStored: number,
): Promise<PreKeyCounts> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .selectFrom("devices")
      .select(["app", "identity_key", "signed_prekey", "last_resort_kyber"])
      .where("account_id", "=", device.accountId)
      .where("device_id", "=", device.deviceId)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw new AppError(Code.NotFound, "DEVICE_NOT_FOUND", "device not found");
    const hasIdentity = upload.identityKey !== undefined || row.identity_key !== null;
    const hasSigned = upload.signedPreKey !== undefined || row.signed_prekey !== null;
    const hasLastResort = upload.lastResortKyberPreKey !== undefined || row.last_resort_kyber !== null;
    if (!hasIdentity || !hasSigned || !hasLastResort) {
      throw new AppError(
        Code.FailedPrecondition,
        "KEYS_INCOMPLETE",
        "the first upload must include identity_key, signed_pre_key and last_resort_kyber_pre_key",
      );
    }
    const identityChanged =
      upload.identityKey !== undefined &&
      row.identity_key !== null &&
      !Buffer.from(row.identity_key).equals(Buffer.from(upload.identityKey));
    if (identityChanged) {
      // Every stored pre-key was signed by the old identity: a new identity needs a new signed
      // pre-key and last-resort key, and old one-time keys must never be handed out again.
      if (!upload.signedPreKey || !upload.lastResortKyberPreKey) {
        throw new AppError(
          Code.FailedPrecondition,
          "KEYS_INCOMPLETE",
          "a new identity_key must come with a new signed_pre_key and last_resort_kyber_pre_key",
        );
      }
      await trx
        .deleteFrom("one_time_prekeys")
        .where("account_id", "=", device.accountId)
        .where("device_id", "=", device.deviceId)
        .execute();
      await trx
        .deleteFrom("kyber_prekeys")
        .where("account_id", "=", device.accountId)
        .where("device_id", "=", device.deviceId)
        .execute();
    }
    const set: Record<string, unknown> = {};
    if (upload.identityKey) set.identity_key = bytes(upload.identityKey);
    if (upload.signedPreKey) {
      set.signed_prekey_id = upload.signedPreKey.keyId;
      set.signed_prekey = bytes(upload.signedPreKey.publicKey);
      set.signed_prekey_signature = bytes(upload.signedPreKey.signature ?? new Uint8Array());
    }
    if (upload.lastResortKyberPreKey) {
      set.last_resort_kyber_id = upload.lastResortKyberPreKey.keyId;
      set.last_resort_kyber = bytes(upload.lastResortKyberPreKey.publicKey);
      set.last_resort_kyber_signature = bytes(upload.lastResortKyberPreKey.signature ?? new Uint8Array());
    }
    if (Object.keys(set).length > 0) {
      await trx
        .updateTable("devices")
        .set(set)
        .where("account_id", "=", device.accountId)
        .where("device_id", "=", device.deviceId)
        .execute();
    }
    if (upload.oneTimePreKeys.length > 0) {
      await trx
        .insertInto("one_time_prekeys")
        .values(
          upload.oneTimePreKeys.map((k) => ({
            account_id: device.accountId,
            device_id: device.deviceId,
            app: row.app,
            key_id: k.keyId,
            public_key: bytes(k.publicKey),
          })),
        )
        .onConflict((oc) =>
          oc
            .columns(["account_id", "device_id", "key_id"])
            .doUpdateSet((eb) => ({ public_key: eb.ref("excluded.public_key") })),
        )
        .execute();
    }
    if (upload.kyberPreKeys.length > 0) {
      await trx
        .insertInto("kyber_prekeys")
        .values(
          upload.kyberPreKeys.map((k) => ({
            account_id: device.accountId,
            device_id: device.deviceId,
            app: row.app,
            key_id: k.keyId,
            public_key: bytes(k.publicKey),
            signature: bytes(k.signature ?? new Uint8Array()),
          })),
        )
        .onConflict((oc) =>
          oc.columns(["account_id", "device_id", "key_id"]).doUpdateSet((eb) => ({
            public_key: eb.ref("excluded.public_key"),
            signature: eb.ref("excluded.signature"),
          })),
        )
        .execute();
    }
    const counts = await countPreKeys(trx, device);
    if (counts.oneTime > maxStored || counts.kyber > maxStored) {
      throw new AppError(
        Code.ResourceExhausted,
        "TOO_MANY_PREKEYS",
        `at most ${maxStored} one-time keys of each kind may be stored`,
      );
    }
    return counts;
  });
}

/** Counts a device's remaining one-time EC and Kyber pre-keys. */
export async function countPreKeys(
  db: Kysely<Database>,
  device: { accountId: string; deviceId: number },
): Promise<PreKeyCounts> {
  const row = await sql<{ one_time: number; kyber: number }>`
    SELECT
      (SELECT count(*) FROM one_time_prekeys WHERE account_id = ${device.accountId} AND device_id = ${device.deviceId})::int AS one_time,
      (SELECT count(*) FROM kyber_prekeys WHERE account_id = ${device.accountId} AND device_id = ${device.deviceId})::int AS kyber
  `.execute(db);
  const r = row.rows[0];
  return { oneTime: r?.one_time ?? 0, kyber: r?.kyber ?? 0 };
}

interface BundleRow {
  device_id: number;
  registration_id: number;
  identity_key: Buffer;
  signed_prekey_id: number;
  signed_prekey: Buffer;
  signed_prekey_signature: Buffer;
  last_resort_kyber_id: number;
  last_resort_kyber: Buffer;
  last_resort_kyber_signature: Buffer;
  ot_key_id: number | null;
  ot_public_key: Buffer | null;
  ky_key_id: number | null;
  ky_public_key: Buffer | null;
  ky_signature: Buffer | null;
}

/**
 * Claims one bundle per device of an account (or one device when `deviceId` > 0) among devices
 * that uploaded keys. Each one-time EC and Kyber key is deleted as it is handed out, with
 * `FOR UPDATE SKIP LOCKED`, so concurrent fetches never receive the same key; with no one-time
 * Kyber key left, the last-resort key is returned (and kept).
 */
export async function claimBundles(
  db: Kysely<Database>,
  accountId: string,
  deviceId: number,
): Promise<ClaimedBundle[]> {
  const result = await sql<BundleRow>`
    WITH d AS (
      SELECT * FROM devices
      WHERE account_id = ${accountId} AND (${deviceId}::int = 0 OR device_id = ${deviceId}::int)
        AND identity_key IS NOT NULL AND signed_prekey IS NOT NULL AND last_resort_kyber IS NOT NULL
    ),
    ot AS (
      DELETE FROM one_time_prekeys k
      USING (
        SELECT pk.account_id, pk.device_id, pk.key_id
        FROM d CROSS JOIN LATERAL (
          SELECT p.account_id, p.device_id, p.key_id FROM one_time_prekeys p
          WHERE p.account_id = d.account_id AND p.device_id = d.device_id
          ORDER BY p.key_id LIMIT 1
          FOR UPDATE SKIP LOCKED
        ) pk
      ) pick
      WHERE k.account_id = pick.account_id AND k.device_id = pick.device_id AND k.key_id = pick.key_id
      RETURNING k.device_id, k.key_id, k.public_key
    ),
    ky AS (
      DELETE FROM kyber_prekeys k
      USING (
        SELECT pk.account_id, pk.device_id, pk.key_id
        FROM d CROSS JOIN LATERAL (
          SELECT p.account_id, p.device_id, p.key_id FROM kyber_prekeys p
          WHERE p.account_id = d.account_id AND p.device_id = d.device_id
          ORDER BY p.key_id LIMIT 1
          FOR UPDATE SKIP LOCKED
        ) pk
      ) pick
      WHERE k.account_id = pick.account_id AND k.device_id = pick.device_id AND k.key_id = pick.key_id
      RETURNING k.device_id, k.key_id, k.public_key, k.signature
    )
    SELECT d.device_id, d.registration_id, d.identity_key, d.signed_prekey_id, d.signed_prekey,
           d.signed_prekey_signature, d.last_resort_kyber_id, d.last_resort_kyber, d.last_resort_kyber_signature,
           ot.key_id AS ot_key_id, ot.public_key AS ot_public_key,
           ky.key_id AS ky_key_id, ky.public_key AS ky_public_key, ky.signature AS ky_signature
    FROM d
    LEFT JOIN ot ON ot.device_id = d.device_id
    LEFT JOIN ky ON ky.device_id = d.device_id
    ORDER BY d.device_id
  `.execute(db);
  return result.rows.map((r) => {
    const kyberIsLastResort = r.ky_key_id === null;
    return {
      deviceId: r.device_id,
      registrationId: r.registration_id,
      identityKey: r.identity_key,
      signedPreKey: {
        keyId: r.signed_prekey_id,
        publicKey: r.signed_prekey,
        signature: r.signed_prekey_signature,
      },
      oneTimePreKey:
        r.ot_key_id === null || r.ot_public_key === null
          ? undefined
          : { keyId: r.ot_key_id, publicKey: r.ot_public_key },
      kyberPreKey: kyberIsLastResort
        ? {
            keyId: r.last_resort_kyber_id,
            publicKey: r.last_resort_kyber,
            signature: r.last_resort_kyber_signature,
          }
        : {
            keyId: r.ky_key_id ?? 0,
            publicKey: r.ky_public_key ?? Buffer.alloc(0),
            signature: r.ky_signature ?? Buffer.alloc(0),
          },
      kyberIsLastResort,
    };
  });
}
