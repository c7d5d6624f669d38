import { createHash, timingSafeEqual } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import { App } from "@switchboard/proto";
import {
  findAccountById,
  findDeviceCredential,
  findProviderById,
  findProviderByTokenHash,
  type Database,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { AppCredential } from "../config.js";
import { verifyPassword } from "./password.js";

/** Who is calling: a gateway or provider acting for its app's accounts, or one device itself. */
export type Principal =
  | { kind: "app"; app: App; providerId: string }
  | { kind: "device"; accountId: string; deviceId: number; app: App; providerId: string };

/** A device an authorised call acts for, with its account's app. */
export interface ActingDevice {
  accountId: string;
  deviceId: number;
  app: App;
  providerId: string;
}

/** Authenticates calls and decides which devices and accounts a principal may act for. */
export interface Authenticator {
  /** Reads `authorization` metadata. Throws UNAUTHENTICATED with a reason. */
  authenticate(metadata: Metadata): Promise<Principal>;
  /**
   * The device a call acts for: the caller itself for a device credential (an `address` naming
   * another device is PERMISSION_DENIED), or `address` for an app credential (required, and its
   * account must belong to the caller's app: PERMISSION_DENIED APP_MISMATCH otherwise).
   */
  actingDevice(
    principal: Principal,
    address: { accountId: string; deviceId: number } | undefined,
    field: string,
  ): Promise<ActingDevice>;
  /** Checks that an app credential may manage `accountId` (device credentials: only their own). */
  requireAccountAccess(principal: Principal, accountId: string): Promise<{ app: App; providerId: string }>;
  /** The app of an account (cached; accounts never change app), or undefined if unknown. */
  accountApp(accountId: string): Promise<{ app: App; providerId: string } | undefined>;
  /** Drops cached credentials of a removed device. */
  forgetDevice(accountId: string, deviceId: number): void;
}

const CREDENTIAL_CACHE_MS = 5 * 60_000;
const MAX_CACHE_ENTRIES = 200_000;

const ACCOUNT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const sha256 = (s: string) => createHash("sha256").update(s).digest();

const unauthenticated = (reason: string, message: string) =>
  new AppError(Code.Unauthenticated, reason, message);

/**
 * Creates the authenticator. App tokens (static `APP_TOKENS`, then the provider registry, looked
 * up uncached by digest so revocation is immediate) are compared by SHA-256 digest in constant time; device
 * secrets are verified with scrypt once and then cached by digest for five minutes (removal of
 * the device drops the cache entry on every instance via the fan-out bus).
 */
export function createAuthenticator(deps: {
  db: Kysely<Database>;
  appCredentials: readonly AppCredential[];
}): Authenticator {
  const apps = deps.appCredentials.map((c) => ({ ...c, digest: sha256(c.token) }));
  const verified = new Map<string, { digest: Buffer; app: App; providerId: string; expiresAt: number }>();
  const accountApps = new Map<string, { app: App; providerId: string }>();

  const remember = <K, V>(map: Map<K, V>, key: K, value: V) => {
    if (map.size >= MAX_CACHE_ENTRIES) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(key, value);
  };

  async function accountApp(accountId: string) {
    const cached = accountApps.get(accountId);
    if (cached) return cached;
    // Not UUID-shaped: no such account (and no query PostgreSQL would reject).
    if (!ACCOUNT_ID.test(accountId)) return undefined;
    const row = await findAccountById(deps.db, accountId);
    if (!row) return undefined;
    const value = { app: row.app as App, providerId: row.provider_id };
    remember(accountApps, accountId, value);
    return value;
  }

  /**
   * A revoked provider's users are cut off with it: their device credentials fail at once (one
   * primary-key read per third-party device call, uncached). Providers configured only through
   * static APP_TOKENS have no registry row and are never revoked here.
   */
  async function requireProviderActive(providerId: string): Promise<void> {
    const provider = await findProviderById(deps.db, providerId);
    if (provider !== undefined && provider.revoked_at !== null)
      throw unauthenticated("CREDENTIALS_REVOKED", "this device's provider was revoked");
  }

  async function authenticateDevice(encoded: string): Promise<Principal> {
    const decoded = Buffer.from(encoded, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const user = colon > 0 ? decoded.slice(0, colon) : "";
    const password = colon > 0 ? decoded.slice(colon + 1) : "";
    const m = /^([0-9a-f-]{36})\.([0-9]{1,7})$/.exec(user);
    if (!m || password.length === 0)
      throw unauthenticated(
        "MALFORMED_CREDENTIALS",
        "expected Basic base64(<account_id>.<device_id>:<password>)",
      );
    const accountId = m[1] as string;
    const deviceId = Number(m[2]);
    const key = `${accountId}.${deviceId}`;
    const digest = sha256(password);
    const hit = verified.get(key);
    if (hit && hit.expiresAt > Date.now() && timingSafeEqual(hit.digest, digest)) {
      if (hit.providerId !== "") await requireProviderActive(hit.providerId);
      return { kind: "device", accountId, deviceId, app: hit.app, providerId: hit.providerId };
    }
    const cred = await findDeviceCredential(deps.db, accountId, deviceId);
    if (!cred || !(await verifyPassword(password, cred.passwordHash))) {
      throw unauthenticated("INVALID_CREDENTIALS", "unknown device or wrong password");
    }
    const acct = await accountApp(accountId);
    const providerId = acct?.providerId ?? "";
    if (providerId !== "") await requireProviderActive(providerId);
    remember(verified, key, {
      digest,
      app: cred.app,
      providerId,
      expiresAt: Date.now() + CREDENTIAL_CACHE_MS,
    });
    return { kind: "device", accountId, deviceId, app: cred.app as App, providerId };
  }

  return {
    async authenticate(metadata) {
      const header = metadata.get("authorization")[0];
      if (typeof header !== "string" || header.length === 0) {
        throw unauthenticated(
          "MISSING_CREDENTIALS",
          "authorization metadata is required (Bearer <app token> or Basic <device credential>)",
        );
      }
      if (header.length > 1024)
        throw unauthenticated("MALFORMED_CREDENTIALS", "authorization metadata is too long");
      const space = header.indexOf(" ");
      const scheme = space > 0 ? header.slice(0, space).toLowerCase() : "";
      const value = space > 0 ? header.slice(space + 1).trim() : "";
      if (scheme === "bearer") {
        const digest = sha256(value);
        const match = apps.find((a) => timingSafeEqual(a.digest, digest));
        if (match) return { kind: "app", app: match.app, providerId: match.providerId };
        // Not a static token: a registered provider's, looked up by digest on every call (no
        // cache), so a revoked token is refused at once on every instance.
        const provider = await findProviderByTokenHash(deps.db, digest);
        if (!provider || !timingSafeEqual(Buffer.from(provider.token_hash), digest))
          throw unauthenticated("INVALID_CREDENTIALS", "unknown app token");
        if (provider.revoked_at !== null)
          throw unauthenticated("CREDENTIALS_REVOKED", "this provider's credentials were revoked");
        return { kind: "app", app: App.THIRD_PARTY, providerId: provider.id };
      }
      if (scheme === "basic") return authenticateDevice(value);
      throw unauthenticated("MALFORMED_CREDENTIALS", "authorization must use the Bearer or Basic scheme");
    },

    async actingDevice(principal, address, field) {
      if (principal.kind === "device") {
        if (
          address &&
          (address.accountId !== principal.accountId || address.deviceId !== principal.deviceId)
        ) {
          throw new AppError(
            Code.PermissionDenied,
            "NOT_YOUR_DEVICE",
            `${field} names another device than the authenticated one`,
          );
        }
        return {
          accountId: principal.accountId,
          deviceId: principal.deviceId,
          app: principal.app,
          providerId: principal.providerId,
        };
      }
      if (!address || address.accountId === "") {
        throw new AppError(
          Code.InvalidArgument,
          "ACTING_DEVICE_REQUIRED",
          `${field} is required with an app credential`,
        );
      }
      const acct = await accountApp(address.accountId);
      if (!acct)
        throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${address.accountId} not found`);
      if (acct.app !== principal.app || acct.providerId !== principal.providerId) {
        throw new AppError(
          Code.PermissionDenied,
          "APP_MISMATCH",
          "an app credential may act only for accounts of its own app",
        );
      }
      return {
        accountId: address.accountId,
        deviceId: address.deviceId,
        app: acct.app,
        providerId: acct.providerId,
      };
    },

    async requireAccountAccess(principal, accountId) {
      if (principal.kind === "device") {
        if (principal.accountId !== accountId)
          throw new AppError(
            Code.PermissionDenied,
            "NOT_YOUR_ACCOUNT",
            "a device may manage only its own account",
          );
        return { app: principal.app, providerId: principal.providerId };
      }
      const acct = await accountApp(accountId);
      if (!acct) throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${accountId} not found`);
      if (acct.app !== principal.app || acct.providerId !== principal.providerId) {
        throw new AppError(
          Code.PermissionDenied,
          "APP_MISMATCH",
          "an app credential may act only for accounts of its own app",
        );
      }
      return acct;
    },

    accountApp,

    forgetDevice(accountId, deviceId) {
      verified.delete(`${accountId}.${deviceId}`);
    },
  };
}
