// Access tokens: random bearer secrets, stored only as SHA-256 digests.
import { hash, randomBytes } from "node:crypto";

/** A new access token: 32 random bytes, base64url (43 characters). */
export function generateAccessToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The stored form of a token: its SHA-256 digest. One per authenticated request: the one-shot
 * `crypto.hash` (Node 20.12+) makes no Hash object, about half the cost of `createHash`.
 */
export function tokenDigest(token: string): Buffer {
  return hash("sha256", token, "buffer");
}

/** A device secret for the delivery service when the client does not choose one (never stored here). */
export function generateDevicePassword(): string {
  return randomBytes(24).toString("base64url");
}
