// Random codes and tokens, and the digests they are stored as.
import { createHash, randomBytes, randomInt, timingSafeEqual } from "node:crypto";

/** Digits in a verification code. */
export const CODE_DIGITS = 6;

/** A random 6-digit verification code (leading zeros kept). */
export function generateVerificationCode(): string {
  return String(randomInt(0, 10 ** CODE_DIGITS)).padStart(CODE_DIGITS, "0");
}

/** The stored form of a verification code: SHA-256 over salt, number and code. */
export function hashVerificationCode(salt: Uint8Array, phone: string, code: string): Uint8Array {
  return createHash("sha256").update(salt).update(phone).update("\0").update(code).digest();
}

/** A random salt for {@link hashVerificationCode}. */
export const generateSalt = (): Uint8Array => randomBytes(16);

/** Constant-time equality of two digests. */
export function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/** SHA-256 of a token or link code: the only form either is stored in. */
export function sha256(value: string): Uint8Array {
  return createHash("sha256").update(value).digest();
}

/** A device bearer token: 32 random bytes, base64url (43 characters). */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

/** A device secret for the delivery service (never stored by the gateway): 24 random bytes, base64url. */
export function generateDevicePassword(): string {
  return randomBytes(24).toString("base64url");
}

const LINK_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/** A one-time link code, four groups of four characters (80 bits), e.g. "K7QH-2MZC-9XTA-PLRE". */
export function generateLinkCode(): string {
  const bytes = randomBytes(16);
  let out = "";
  for (let i = 0; i < 16; i++) {
    if (i > 0 && i % 4 === 0) out += "-";
    out += LINK_ALPHABET[(bytes[i] ?? 0) % LINK_ALPHABET.length];
  }
  return out;
}

/** Normalises a typed link code (case, spaces) before hashing. */
export function normalizeLinkCode(code: string): string {
  return code
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, "")
    .replace(/(.{4})(?=.)/g, "$1-");
}

/** A phone number with all but its last four digits masked, for logs ("********4567"). */
export function maskPhone(phone: string): string {
  return phone.length <= 4 ? phone : "*".repeat(phone.length - 4) + phone.slice(-4);
}
