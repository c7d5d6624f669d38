// Device authentication: `authorization: Bearer <device token>` metadata, checked against the
// stored SHA-256 digests.
import type { Metadata } from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import type { Kysely } from "kysely";
import { sha256 } from "../domain/secrets.js";
import type { WaDatabase } from "../storage/schema.js";
import { findDeviceToken } from "../storage/token-repository.js";

/** The device a call is authenticated as. */
export interface AuthedDevice {
  accountId: string;
  deviceId: number;
  /** The account's E.164 phone number. */
  phone: string;
}

/** The bearer token in call metadata, or undefined. */
export function bearerToken(metadata: Metadata): string | undefined {
  const raw = metadata.get("authorization")[0];
  if (typeof raw !== "string") return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(raw);
  return m?.[1];
}

/**
 * Authenticates a call by its device token. Fails UNAUTHENTICATED (MISSING_TOKEN or
 * INVALID_TOKEN), or UNAVAILABLE (AUTH_UNAVAILABLE) when the database cannot answer.
 */
export async function authenticateDevice(db: Kysely<WaDatabase>, metadata: Metadata): Promise<AuthedDevice> {
  const token = bearerToken(metadata);
  if (token === undefined)
    throw new AppError(
      Code.Unauthenticated,
      "MISSING_TOKEN",
      "authorization: Bearer <device token> is required",
    );
  let row;
  try {
    row = await findDeviceToken(db, sha256(token));
  } catch (err) {
    // A pool timeout or lost connection (e.g. a reconnect storm): the client may retry.
    throw new AppError(Code.Unavailable, "AUTH_UNAVAILABLE", "cannot check the token right now; retry", {
      cause: err,
      retryAfterMs: 1000,
    });
  }
  if (!row) throw new AppError(Code.Unauthenticated, "INVALID_TOKEN", "unknown or revoked device token");
  return { accountId: row.account_id, deviceId: row.device_id, phone: row.phone };
}
