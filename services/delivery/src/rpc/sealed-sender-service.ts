import { AppError, Code } from "@switchboard/errors";
import type { ServiceImpl } from "@switchboard/grpc";
import type { SealedSenderService } from "@switchboard/proto";
import {
  deleteUnidentifiedAccess,
  findIdentityKey,
  setUnidentifiedAccess,
  type Database,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Authenticator } from "../auth/principal.js";
import { invalid } from "../domain/limits.js";
import { ACCESS_KEY_BYTES, accessKeyHash, type CertificateAuthority } from "../domain/sealed-sender.js";

/** The SealedSenderService handlers: sender certificates, the trust root, unidentified access. */
export function createSealedSenderService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  authority: CertificateAuthority;
}): ServiceImpl<typeof SealedSenderService> {
  const { db, auth } = deps;
  return {
    async getSenderCertificate(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const identityKey = await findIdentityKey(db, device.accountId, device.deviceId);
      if (!identityKey)
        throw new AppError(
          Code.FailedPrecondition,
          "NO_IDENTITY_KEY",
          "upload the device's identity key (KeyService.UploadKeys) before requesting a sender certificate",
        );
      const issued = deps.authority.issue(device.accountId, device.deviceId, identityKey, Date.now());
      return { certificate: issued.certificate, expiresAtMs: BigInt(issued.expiresAtMs) };
    },

    async getTrustRoot(_req, ctx) {
      await auth.authenticate(ctx.metadata);
      return { publicKey: deps.authority.trustRoot };
    },

    async setUnidentifiedAccess(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      if (req.accessKey.byteLength !== 0 && req.accessKey.byteLength !== ACCESS_KEY_BYTES)
        throw invalid("INVALID_ACCESS_KEY", `access_key must be ${ACCESS_KEY_BYTES} bytes (or empty)`);
      if (req.accessKey.byteLength === 0 && !req.unrestricted)
        throw invalid(
          "MISSING_FIELD",
          "set access_key, unrestricted or both (DisableUnidentifiedAccess turns it off)",
        );
      await setUnidentifiedAccess(db, {
        accountId: device.accountId,
        app: device.app,
        accessKeyHash: req.accessKey.byteLength === 0 ? undefined : accessKeyHash(req.accessKey),
        accessKey: req.accessKey.byteLength === 0 ? undefined : req.accessKey,
        unrestricted: req.unrestricted,
      });
      return {};
    },

    async disableUnidentifiedAccess(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      await deleteUnidentifiedAccess(db, device.accountId);
      return {};
    },
  };
}
