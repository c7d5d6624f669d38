import { hash, randomBytes } from "node:crypto";

/** Bytes of randomness in an access token (base64url: 43 characters). */
export const TOKEN_BYTES = 32;

/** A new access token: 32 random bytes, base64url. */
export const generateToken = (): string => randomBytes(TOKEN_BYTES).toString("base64url");

/**
 * The SHA-256 digest under which a token is stored (tokens themselves are never stored); the
 * one-shot `crypto.hash` (Node 20.12+), without a Hash object per authenticated request.
 */
export const digestToken = (token: string): Buffer => hash("sha256", token, "buffer");

/** A device secret for the delivery service (the gateway acts with its app credential, so it is never used). */
export const generateDevicePassword = (): string => randomBytes(24).toString("base64url");

const BEARER = /^Bearer ([A-Za-z0-9_-]{16,128})$/;

/** The token of an `Authorization: Bearer <token>` header, if well-formed. */
export function bearerToken(header: string | undefined): string | undefined {
  return header === undefined ? undefined : BEARER.exec(header.trim())?.[1];
}
