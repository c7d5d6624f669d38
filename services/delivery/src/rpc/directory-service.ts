import { randomUUID } from "node:crypto";
import { AppError, Code, isAppError } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import type { ServiceImpl } from "@switchboard/grpc";
import type { DirectoryService } from "@switchboard/proto";
import { App, RequestsPolicy } from "@switchboard/proto";
import {
  deleteDevice,
  findAccountByHandle,
  findAccountById,
  insertAccount,
  insertDevice,
  listDevices,
  reregisterAccount,
  setThirdPartyReachable,
  type Database,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import { hashPassword } from "../auth/password.js";
import type { Authenticator, Principal } from "../auth/principal.js";
import type { RateLimiter } from "@switchboard/ratelimit";
import type { Logger } from "pino";
import { encodeRemovedEvent } from "../delivery/events.js";
import { checkLimits, type RateLimitPolicies } from "../delivery/rate-limits.js";
import type { SubscriptionManager } from "../delivery/subscriptions.js";
import { normalizeHandle } from "../domain/handles.js";
import { findHiddenAccounts } from "../domain/interop-policy.js";
import {
  invalid,
  MAX_DEVICE_NAME_BYTES,
  MAX_PASSWORD_BYTES,
  MIN_PASSWORD_BYTES,
  requireDeviceId,
  requireMaxBytes,
  requireRegistrationId,
  requireUuid,
} from "../domain/limits.js";
import { accountToProto } from "./mapping.js";

function requirePassword(password: string): string {
  const n = Buffer.byteLength(password);
  if (n < MIN_PASSWORD_BYTES || n > MAX_PASSWORD_BYTES) {
    throw invalid("INVALID_PASSWORD", `password must be ${MIN_PASSWORD_BYTES}-${MAX_PASSWORD_BYTES} bytes`);
  }
  return password;
}

/** Validates a RequestsPolicy enum value (unknown numbers are INVALID_ARGUMENT). */
function requireRequestsPolicy(policy: RequestsPolicy): number {
  if (!(policy in RequestsPolicy))
    throw invalid("INVALID_POLICY", "requests_policy is not a known RequestsPolicy");
  return policy;
}

/** Encodes the broadcast that makes every instance forget a removed device's credentials. */
export const encodeDeviceRemovedBroadcast = (accountId: string, deviceId: number): Uint8Array =>
  Buffer.from(`device-removed ${accountId} ${deviceId}`);

/** The DirectoryService handlers: accounts, devices and handle resolution. */
export function createDirectoryService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  fanout: Fanout;
  subscriptions: SubscriptionManager;
  maxDevices: number;
  limiter: RateLimiter;
  policies: RateLimitPolicies;
  log: Logger;
}): ServiceImpl<typeof DirectoryService> {
  const { db, auth } = deps;

  /** Drops cached credentials and ends streams of devices that were removed or replaced. */
  async function endDeviceSessions(accountId: string, deviceIds: readonly number[]) {
    for (const deviceId of deviceIds) {
      auth.forgetDevice(accountId, deviceId);
      await deps.subscriptions.removeDevice({ accountId, deviceId });
    }
    await deps.fanout.publish(
      deviceIds.map((deviceId) => ({ key: { accountId, deviceId }, payload: encodeRemovedEvent() })),
    );
    for (const deviceId of deviceIds)
      await deps.fanout.publishBroadcast(encodeDeviceRemovedBroadcast(accountId, deviceId));
  }

  /** True when `accountId` must look non-existent to `principal` (the third-party opt-in). */
  async function isHiddenFrom(principal: Principal, accountId: string): Promise<boolean> {
    return (await findHiddenAccounts(db, principal, [accountId])).has(accountId);
  }

  /** The account a settings call names: `account_id`, or the caller's own with a device credential. */
  function ownAccount(principal: Principal, accountId: string): string {
    if (accountId === "" && principal.kind === "device") return principal.accountId;
    return requireUuid(accountId, "account_id");
  }

  return {
    async registerAccount(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      if (principal.kind !== "app")
        throw new AppError(
          Code.PermissionDenied,
          "APP_CREDENTIAL_REQUIRED",
          "accounts are registered by an app (gateway) credential",
        );
      if (!req.handle) throw invalid("HANDLE_REQUIRED", "handle is required");
      if (req.handle.app !== principal.app || req.handle.providerId !== principal.providerId) {
        throw new AppError(
          Code.PermissionDenied,
          "APP_MISMATCH",
          "an app credential may register handles of its own app only",
        );
      }
      const handle = normalizeHandle(req.handle.app, req.handle.value, req.handle.providerId);
      const [limited] = await checkLimits(deps.limiter, deps.log, [
        [{ policy: deps.policies.register, subject: `${req.handle.app}:${req.handle.providerId}:${handle}` }],
      ]);
      if (limited) throw limited;
      const registrationId = requireRegistrationId(req.registrationId);
      const passwordHash = await hashPassword(requirePassword(req.password));
      const fields = {
        app: req.handle.app,
        providerId: req.handle.providerId,
        handle,
        registrationId,
        deviceName: requireMaxBytes(req.deviceName, MAX_DEVICE_NAME_BYTES, "device_name"),
        passwordHash,
        minor: req.minor,
        requestsPolicy: requireRequestsPolicy(req.requestsPolicy),
      };
      try {
        const { account, device } = await insertAccount(db, { id: randomUUID(), ...fields });
        ctx.log.info({ accountId: account.id, app: App[account.app] }, "account registered");
        const proto = accountToProto(account, [device]);
        return { account: proto.account, device: proto.devices?.[0], replaced: false };
      } catch (err) {
        if (!(req.replaceExisting && isAppError(err) && err.reason === "HANDLE_TAKEN")) throw err;
      }
      const again = await reregisterAccount(db, fields);
      if (!again)
        throw new AppError(
          Code.Aborted,
          "CONCURRENT_REGISTRATION",
          "the handle changed during registration; retry",
        );
      // The old primary and every linked device lose their sessions at once, on every instance.
      await endDeviceSessions(again.account.id, [1, ...again.removedDeviceIds]);
      ctx.log.info(
        { accountId: again.account.id, removedDevices: again.removedDeviceIds.length },
        "account re-registered",
      );
      const proto = accountToProto(again.account, [again.device]);
      return { account: proto.account, device: proto.devices?.[0], replaced: true };
    },

    async registerDevice(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const accountId = requireUuid(req.accountId, "account_id");
      await auth.requireAccountAccess(principal, accountId);
      if (principal.kind === "device" && principal.deviceId !== 1) {
        throw new AppError(
          Code.PermissionDenied,
          "PRIMARY_DEVICE_REQUIRED",
          "only the primary device may link devices",
        );
      }
      const device = await insertDevice(db, {
        accountId,
        registrationId: requireRegistrationId(req.registrationId),
        name: requireMaxBytes(req.deviceName, MAX_DEVICE_NAME_BYTES, "device_name"),
        passwordHash: await hashPassword(requirePassword(req.password)),
        maxDevices: deps.maxDevices,
      });
      ctx.log.info({ accountId, deviceId: device.deviceId }, "device linked");
      return {
        device: {
          deviceId: device.deviceId,
          registrationId: device.registrationId,
          name: device.name,
          createdAtMs: BigInt(device.createdAt.getTime()),
        },
      };
    },

    async removeDevice(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const accountId = requireUuid(req.accountId, "account_id");
      const deviceId = requireDeviceId(req.deviceId, "device_id");
      await auth.requireAccountAccess(principal, accountId);
      if (deviceId === 1)
        throw new AppError(Code.FailedPrecondition, "PRIMARY_DEVICE", "the primary device cannot be removed");
      if (principal.kind === "device" && principal.deviceId !== 1 && principal.deviceId !== deviceId) {
        throw new AppError(
          Code.PermissionDenied,
          "PRIMARY_DEVICE_REQUIRED",
          "only the primary device may remove other devices",
        );
      }
      const removed = await deleteDevice(db, accountId, deviceId);
      if (!removed) throw new AppError(Code.NotFound, "DEVICE_NOT_FOUND", `device ${deviceId} not found`);
      await endDeviceSessions(accountId, [deviceId]);
      ctx.log.info({ accountId, deviceId }, "device removed");
      return {};
    },

    async resolveHandle(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      if (!req.handle) throw invalid("HANDLE_REQUIRED", "handle is required");
      const handle = normalizeHandle(req.handle.app, req.handle.value, req.handle.providerId);
      const account = await findAccountByHandle(db, req.handle.app, req.handle.providerId, handle);
      if (!account || (await isHiddenFrom(principal, account.id)))
        return { result: { case: "notFound", value: {} } };
      return {
        result: { case: "found", value: accountToProto(account, await listDevices(db, [account.id])) },
      };
    },

    async getAccount(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const account = await findAccountById(db, requireUuid(req.accountId, "account_id"));
      if (!account || (await isHiddenFrom(principal, account.id)))
        return { result: { case: "notFound", value: {} } };
      return {
        result: { case: "found", value: accountToProto(account, await listDevices(db, [account.id])) },
      };
    },

    async setThirdPartyReachable(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const accountId = ownAccount(principal, req.accountId);
      const acct = await auth.requireAccountAccess(principal, accountId);
      if (acct.app === App.THIRD_PARTY)
        throw new AppError(
          Code.FailedPrecondition,
          "THIRD_PARTY_ACCOUNT",
          "accounts of third-party providers are always reachable",
        );
      const reachable = await setThirdPartyReachable(db, accountId, req.reachable);
      if (reachable === undefined)
        throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${accountId} not found`);
      ctx.log.info({ accountId, reachable }, "third-party reachability set");
      return { reachable };
    },

    async getThirdPartyReachable(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const accountId = ownAccount(principal, req.accountId);
      const acct = await auth.requireAccountAccess(principal, accountId);
      const account = await findAccountById(db, accountId);
      if (!account) throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${accountId} not found`);
      return { reachable: acct.app === App.THIRD_PARTY || account.third_party_reachable };
    },
  };
}
