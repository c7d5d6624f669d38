// The unary RPCs of WhatsAppService: registration, device linking, keys, lookups and groups.
// (The Chat stream lives in chat.ts.)
import type { DeliveryLink } from "@switchboard/delivery-link";
import { AppError, Code } from "@switchboard/errors";
import type { CallContext, ServiceImpl } from "@switchboard/grpc";
import { App, type Group, type Handle, type whatsapp } from "@switchboard/proto";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { authenticateDevice, type AuthedDevice } from "../auth/device-auth.js";
import type { CodeSender } from "../codes/code-sender.js";
import type { Directory } from "../directory.js";
import { E164, formatGroupJid, formatUserJid, parseGroupJid, parseUserJid, phoneJid } from "../domain/jid.js";
import { isRegistrationId, MAX_DEVICE_NAME_BYTES, type GatewayLimits } from "../domain/limits.js";
import {
  digestsEqual,
  generateDevicePassword,
  generateLinkCode,
  generateSalt,
  generateToken,
  generateVerificationCode,
  hashVerificationCode,
  maskPhone,
  normalizeLinkCode,
  sha256,
} from "../domain/secrets.js";
import {
  clearCode,
  insertLinkCode,
  issueCode,
  lockCode,
  recordWrongAttempt,
  restoreCode,
  takeLinkCode,
  type ConsumedCode,
} from "../storage/code-repository.js";
import type { WaDatabase } from "../storage/schema.js";
import { deleteAccountTokens, insertDeviceToken } from "../storage/token-repository.js";
import { createPrivacyHandlers } from "./privacy.js";
import { createRequestHandlers } from "./requests.js";
import { createSafetyHandlers } from "./safety.js";

type Service = typeof whatsapp.WhatsAppService;

/** What the unary handlers need. */
export interface WhatsAppServiceDeps {
  db: Kysely<WaDatabase>;
  link: DeliveryLink;
  directory: Directory;
  codeSender: CodeSender;
  limits: GatewayLimits;
  log: Logger;
  now: () => number;
}

const invalid = (reason: string, message: string) => new AppError(Code.InvalidArgument, reason, message);

function requirePhone(phone: string): string {
  const p = phone.trim();
  if (!E164.test(p)) throw invalid("INVALID_PHONE_NUMBER", "phone_number must be E.164, e.g. +15551234567");
  return p;
}

function requireRegistrationId(n: number): number {
  if (!isRegistrationId(n)) throw invalid("INVALID_REGISTRATION_ID", "registration_id must be 1..16380");
  return n;
}

function requireDeviceName(name: string): string {
  if (Buffer.byteLength(name) > MAX_DEVICE_NAME_BYTES)
    throw invalid("INVALID_DEVICE_NAME", `device_name is at most ${MAX_DEVICE_NAME_BYTES} bytes`);
  return name;
}

const userNotFound = (jid: string) =>
  new AppError(Code.NotFound, "USER_NOT_FOUND", `no user ${jid}`, { metadata: { jid: jid.slice(0, 128) } });

/** A user JID without a device part; fails INVALID_ARGUMENT (USER_JID_REQUIRED) otherwise. */
function requireUserJid(jid: string): Handle {
  const parsed = parseUserJid(jid);
  if (parsed.device !== undefined)
    throw invalid("USER_JID_REQUIRED", `${jid} is a device JID; name the user (no ":<device>")`);
  return parsed.handle;
}

type VerifyOutcome =
  { kind: "ok"; consumed: ConsumedCode } | { kind: "expired" } | { kind: "wrong"; attemptsLeft: number };

/**
 * Creates the unary handlers. Each authenticated call resolves the bearer token to its device and
 * acts for it at the delivery service with the gateway's app credential.
 */
export function createWhatsAppService(deps: WhatsAppServiceDeps): Omit<ServiceImpl<Service>, "chat"> {
  const { db, link, directory, limits } = deps;
  const auth = (ctx: CallContext): Promise<AuthedDevice> => authenticateDevice(db, ctx.metadata);
  const address = (d: AuthedDevice) => ({ accountId: d.accountId, deviceId: d.deviceId });

  async function accountIdOf(jid: string): Promise<string> {
    const id = await directory.findAccountId(requireUserJid(jid));
    if (id === undefined) throw userNotFound(jid);
    return id;
  }

  function participantsOf(group: Group | undefined): string[] {
    const out: string[] = [];
    for (const m of group?.members ?? []) {
      directory.remember(m.account);
      if (m.account?.handle) out.push(formatUserJid(m.account.handle));
    }
    return out;
  }

  return {
    ...createPrivacyHandlers({ db, link }),
    ...createRequestHandlers({ db, link, directory }),
    ...createSafetyHandlers({ db, link, directory }),

    async requestCode(req, ctx) {
      const phone = requirePhone(req.phoneNumber);
      const code = generateVerificationCode();
      const salt = generateSalt();
      const now = deps.now();
      const r = await issueCode(db, {
        phone,
        codeHash: hashVerificationCode(salt, phone, code),
        salt,
        expiresAt: new Date(now + limits.codeTtlMs),
        now: new Date(now),
        windowMs: limits.codeWindowMs,
        maxRequests: limits.codeRequestsPerWindow,
      });
      if (!r.issued) {
        throw new AppError(
          Code.ResourceExhausted,
          "CODE_RATE_LIMITED",
          `too many codes requested for this number; retry in ${Math.ceil(r.retryAfterMs / 1000)} s`,
          { retryAfterMs: r.retryAfterMs },
        );
      }
      await deps.codeSender.send(phone, code);
      ctx.log.info({ phone: maskPhone(phone) }, "verification code sent");
      return { expiresInSeconds: Math.round(limits.codeTtlMs / 1000) };
    },

    async verifyCode(req, ctx) {
      const phone = requirePhone(req.phoneNumber);
      const code = req.code.trim();
      if (!/^[0-9]{6}$/.test(code)) throw invalid("INVALID_CODE_FORMAT", "code must be 6 digits");
      const registrationId = requireRegistrationId(req.registrationId);
      const deviceName = requireDeviceName(req.deviceName);
      // The row lock serialises verifications of one number: a correct code is consumed at once,
      // so a concurrent verification finds none. The delivery call comes after the commit: no
      // gateway transaction may wait on the delivery service, which may share the database (the
      // embedded one is a single connection, so that would deadlock). A failed registration puts
      // the code back.
      const outcome = await db.transaction().execute(async (trx): Promise<VerifyOutcome> => {
        const row = await lockCode(trx, phone);
        if (!row?.code_hash || !row.code_salt || !row.code_expires_at)
          throw new AppError(
            Code.FailedPrecondition,
            "NO_ACTIVE_CODE",
            "request a code for this number first",
          );
        if (row.code_expires_at.getTime() <= deps.now()) {
          await clearCode(trx, phone);
          return { kind: "expired" };
        }
        if (!digestsEqual(row.code_hash, hashVerificationCode(row.code_salt, phone, code))) {
          const attempts = await recordWrongAttempt(trx, phone);
          if (attempts >= limits.codeMaxAttempts) await clearCode(trx, phone);
          return { kind: "wrong", attemptsLeft: Math.max(0, limits.codeMaxAttempts - attempts) };
        }
        await clearCode(trx, phone);
        return {
          kind: "ok",
          consumed: {
            codeHash: row.code_hash,
            salt: row.code_salt,
            expiresAt: row.code_expires_at,
            attempts: row.attempts,
          },
        };
      });
      if (outcome.kind === "ok") {
        // The code proves ownership of the number: a number registered before is re-registered
        // (a reinstall), which replaces its primary device and unlinks companions.
        let registered;
        try {
          registered = await link.directory.registerAccount({
            handle: { app: App.WHATSAPP, value: phone },
            registrationId,
            password: generateDevicePassword(),
            deviceName,
            replaceExisting: true,
            minor: req.minor,
          });
        } catch (err) {
          await restoreCode(db, phone, outcome.consumed);
          throw err;
        }
        const accountId = registered.account?.id ?? "";
        const deviceId = registered.device?.deviceId ?? 1;
        const token = generateToken();
        await db.transaction().execute(async (trx) => {
          if (registered.replaced) await deleteAccountTokens(trx, accountId);
          await insertDeviceToken(trx, {
            token_hash: sha256(token),
            account_id: accountId,
            device_id: deviceId,
            phone,
          });
        });
        directory.remember(registered.account);
        ctx.log.info({ accountId, deviceId }, "number verified and registered");
        return { jid: phoneJid(phone, deviceId), token, accountId };
      }
      if (outcome.kind === "expired")
        throw new AppError(Code.FailedPrecondition, "CODE_EXPIRED", "the code expired; request a new one");
      if (outcome.attemptsLeft === 0)
        throw new AppError(
          Code.ResourceExhausted,
          "TOO_MANY_ATTEMPTS",
          "too many wrong codes; request a new one",
        );
      throw new AppError(Code.InvalidArgument, "WRONG_CODE", "wrong code", {
        metadata: { attemptsLeft: String(outcome.attemptsLeft) },
      });
    },

    async createLinkCode(_req, ctx) {
      const device = await auth(ctx);
      if (device.deviceId !== 1)
        throw new AppError(
          Code.PermissionDenied,
          "PRIMARY_DEVICE_REQUIRED",
          "only the primary device may link companion devices",
        );
      const code = generateLinkCode();
      const now = deps.now();
      await insertLinkCode(db, {
        codeHash: sha256(normalizeLinkCode(code)),
        accountId: device.accountId,
        phone: device.phone,
        expiresAt: new Date(now + limits.linkCodeTtlMs),
        now: new Date(now),
      });
      ctx.log.info({ accountId: device.accountId }, "link code created");
      return { code, expiresInSeconds: Math.round(limits.linkCodeTtlMs / 1000) };
    },

    async linkDevice(req, ctx) {
      const registrationId = requireRegistrationId(req.registrationId);
      const deviceName = requireDeviceName(req.deviceName);
      if (req.code.trim() === "") throw invalid("LINK_CODE_REQUIRED", "code is required");
      // Taken (deleted) before the delivery call and put back if it fails: no gateway transaction
      // may wait on the delivery service, which may share the (single-connection embedded) database.
      const now = new Date(deps.now());
      const row = await takeLinkCode(db, sha256(normalizeLinkCode(req.code)), now);
      if (!row)
        throw new AppError(Code.NotFound, "LINK_CODE_NOT_FOUND", "unknown, used or expired link code");
      let r;
      try {
        r = await link.directory.registerDevice({
          accountId: row.account_id,
          registrationId,
          password: generateDevicePassword(),
          deviceName,
        });
      } catch (err) {
        await insertLinkCode(db, {
          codeHash: row.code_hash,
          accountId: row.account_id,
          phone: row.phone,
          expiresAt: row.expires_at,
          now,
        });
        throw err;
      }
      const deviceId = r.device?.deviceId ?? 0;
      const token = generateToken();
      await db.transaction().execute((trx) =>
        insertDeviceToken(trx, {
          token_hash: sha256(token),
          account_id: row.account_id,
          device_id: deviceId,
          phone: row.phone,
        }),
      );
      ctx.log.info({ accountId: row.account_id, deviceId }, "companion device linked");
      return { jid: phoneJid(row.phone, deviceId), token, accountId: row.account_id };
    },

    async uploadKeys(req, ctx) {
      const device = await auth(ctx);
      const signed = (k: whatsapp.PreKey | undefined) =>
        k && { keyId: k.keyId, publicKey: k.publicKey, signature: k.signature };
      const r = await link.keys.uploadKeys({
        device: address(device),
        identityKey: req.identityKey,
        signedPreKey: signed(req.signedPreKey),
        oneTimePreKeys: req.oneTimePreKeys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey })),
        kyberPreKeys: req.kyberPreKeys.map((k) => ({
          keyId: k.keyId,
          publicKey: k.publicKey,
          signature: k.signature,
        })),
        lastResortKyberPreKey: signed(req.lastResortKyberPreKey),
      });
      return { oneTimePreKeyCount: r.oneTimePreKeyCount, kyberPreKeyCount: r.kyberPreKeyCount };
    },

    async getPreKeyBundles(req, ctx) {
      const device = await auth(ctx);
      const jid = parseUserJid(req.jid);
      const accountId = await directory.findAccountId(jid.handle);
      if (accountId === undefined) throw userNotFound(req.jid);
      const r = await link.keys.getPreKeyBundles({
        requester: address(device),
        accountId,
        deviceId: jid.device ?? 0,
      });
      if (r.result.case !== "bundles")
        throw jid.device === undefined
          ? userNotFound(req.jid)
          : new AppError(Code.NotFound, "DEVICE_NOT_FOUND", `no device ${req.jid} with keys`);
      return {
        accountId,
        bundles: r.result.value.bundles.map((b) => ({
          jid: formatUserJid(jid.handle, b.deviceId),
          registrationId: b.registrationId,
          identityKey: b.identityKey,
          signedPreKey: b.signedPreKey && {
            keyId: b.signedPreKey.keyId,
            publicKey: b.signedPreKey.publicKey,
            signature: b.signedPreKey.signature,
          },
          oneTimePreKey: b.oneTimePreKey && {
            keyId: b.oneTimePreKey.keyId,
            publicKey: b.oneTimePreKey.publicKey,
          },
          kyberPreKey: b.kyberPreKey && {
            keyId: b.kyberPreKey.keyId,
            publicKey: b.kyberPreKey.publicKey,
            signature: b.kyberPreKey.signature,
          },
        })),
      };
    },

    async lookupUser(req, ctx) {
      await auth(ctx);
      const handle = requireUserJid(req.jid);
      const found = await directory.resolve(handle);
      if (!found?.account) return { exists: false };
      return {
        exists: true,
        accountId: found.account.id,
        devices: found.devices.map((d) => ({
          jid: formatUserJid(handle, d.deviceId),
          registrationId: d.registrationId,
        })),
      };
    },

    async createGroup(req, ctx) {
      const device = await auth(ctx);
      const memberAccountIds: string[] = [];
      for (const jid of req.participants) memberAccountIds.push(await accountIdOf(jid));
      const r = await link.groups.createGroup({ requester: address(device), memberAccountIds });
      participantsOf(r.group);
      ctx.log.info({ groupId: r.group?.id, members: r.group?.members.length }, "group created");
      return { groupJid: formatGroupJid(r.group?.id ?? "") };
    },

    async updateGroup(req, ctx) {
      const device = await auth(ctx);
      const groupId = parseGroupJid(req.groupJid);
      const add: string[] = [];
      for (const jid of req.add) add.push(await accountIdOf(jid));
      const remove: string[] = [];
      for (const jid of req.remove) remove.push(await accountIdOf(jid));
      const requester = address(device);
      let group: Group | undefined;
      if (add.length > 0)
        group = (await link.groups.addGroupMembers({ requester, groupId, accountIds: add })).group;
      if (remove.length > 0)
        group = (await link.groups.removeGroupMembers({ requester, groupId, accountIds: remove })).group;
      // No changes: answer the current members (the native API has no separate GetGroup).
      if (add.length === 0 && remove.length === 0)
        group = (await link.groups.getGroup({ requester, groupId })).group;
      return { participants: participantsOf(group) };
    },
  };
}
