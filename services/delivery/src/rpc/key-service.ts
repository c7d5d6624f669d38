import type { ServiceImpl } from "@switchboard/grpc";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { KeyService } from "@switchboard/proto";
import {
  type App,
  type SignedPreKey,
  type EcPreKey,
  type GetPreKeyBundlesResponseSchema,
} from "@switchboard/proto";
import {
  claimBundles,
  countPreKeys,
  findAccountById,
  storeKeys,
  type Database,
  type StoredPreKey,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { RateLimiter } from "@switchboard/ratelimit";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/principal.js";
import { checkLimits, type RateLimitPolicies } from "../delivery/rate-limits.js";
import { findHiddenAccounts } from "../domain/interop-policy.js";
import {
  invalid,
  MAX_KEY_BYTES,
  MAX_PREKEYS_PER_UPLOAD,
  MAX_PREKEYS_STORED,
  requireUuid,
} from "../domain/limits.js";

function keyBytes(b: Uint8Array, field: string, exact?: number): Uint8Array {
  if (b.byteLength === 0 || b.byteLength > MAX_KEY_BYTES || (exact !== undefined && b.byteLength !== exact)) {
    throw invalid("INVALID_KEY", `${field} has an invalid length (${b.byteLength} bytes)`);
  }
  return b;
}

function signed(k: SignedPreKey, field: string): StoredPreKey {
  return {
    keyId: k.keyId,
    publicKey: keyBytes(k.publicKey, `${field}.public_key`),
    signature: keyBytes(k.signature, `${field}.signature`, 64),
  };
}

function oneTime(k: EcPreKey, field: string): StoredPreKey {
  return { keyId: k.keyId, publicKey: keyBytes(k.publicKey, `${field}.public_key`, 33) };
}

function uniqueIds(keys: ReadonlyArray<{ keyId: number }>, field: string) {
  if (keys.length > MAX_PREKEYS_PER_UPLOAD)
    throw invalid("TOO_MANY_KEYS", `${field}: at most ${MAX_PREKEYS_PER_UPLOAD} per upload`);
  if (new Set(keys.map((k) => k.keyId)).size !== keys.length)
    throw invalid("DUPLICATE_KEY_ID", `${field} repeats a key_id`);
}

/** The KeyService handlers: key upload, one-time bundle claims, counts. */
export function createKeyService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  limiter: RateLimiter;
  policies: RateLimitPolicies;
  log: Logger;
}): ServiceImpl<typeof KeyService> {
  const { db, auth } = deps;
  return {
    async uploadKeys(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      uniqueIds(req.oneTimePreKeys, "one_time_pre_keys");
      uniqueIds(req.kyberPreKeys, "kyber_pre_keys");
      const counts = await storeKeys(
        db,
        device,
        {
          identityKey:
            req.identityKey.byteLength > 0 ? keyBytes(req.identityKey, "identity_key", 33) : undefined,
          signedPreKey: req.signedPreKey ? signed(req.signedPreKey, "signed_pre_key") : undefined,
          oneTimePreKeys: req.oneTimePreKeys.map((k, i) => oneTime(k, `one_time_pre_keys[${i}]`)),
          kyberPreKeys: req.kyberPreKeys.map((k, i) => signed(k, `kyber_pre_keys[${i}]`)),
          lastResortKyberPreKey: req.lastResortKyberPreKey
            ? signed(req.lastResortKyberPreKey, "last_resort_kyber_pre_key")
            : undefined,
        },
        MAX_PREKEYS_STORED,
      );
      ctx.log.info(
        {
          accountId: device.accountId,
          deviceId: device.deviceId,
          ...counts,
          identity: req.identityKey.byteLength > 0,
        },
        "keys uploaded",
      );
      return { oneTimePreKeyCount: counts.oneTime, kyberPreKeyCount: counts.kyber };
    },

    async getPreKeyBundles(req, ctx): Promise<MessageInitShape<typeof GetPreKeyBundlesResponseSchema>> {
      const principal = await auth.authenticate(ctx.metadata);
      const requester = await auth.actingDevice(principal, req.requester, "requester");
      const accountId = requireUuid(req.accountId, "account_id");
      // Each fetch may consume one-time keys: limit per requesting account (pre-key draining).
      const [limited] = await checkLimits(deps.limiter, deps.log, [
        [{ policy: deps.policies.prekeys, subject: requester.accountId }],
      ]);
      if (limited) throw limited;
      const account = await findAccountById(db, accountId);
      // An account hidden from a third-party requester (no opt-in) does not exist for it.
      if (!account || (await findHiddenAccounts(db, requester, [accountId])).has(accountId))
        return { result: { case: "notFound", value: {} } };
      const bundles = await claimBundles(db, accountId, req.deviceId);
      if (req.deviceId > 0 && bundles.length === 0) return { result: { case: "notFound", value: {} } };
      return {
        result: {
          case: "bundles",
          value: {
            app: account.app as App,
            bundles: bundles.map((b) => ({
              deviceId: b.deviceId,
              registrationId: b.registrationId,
              identityKey: b.identityKey,
              signedPreKey: b.signedPreKey,
              oneTimePreKey: b.oneTimePreKey,
              kyberPreKey: b.kyberPreKey,
              kyberPreKeyIsLastResort: b.kyberIsLastResort,
            })),
          },
        },
      };
    },

    async getPreKeyCount(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const counts = await countPreKeys(db, device);
      return { oneTimePreKeyCount: counts.oneTime, kyberPreKeyCount: counts.kyber };
    },
  };
}
