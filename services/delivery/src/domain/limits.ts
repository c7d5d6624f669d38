import { AppError, Code } from "@switchboard/errors";

/** Longest client message id, in bytes. */
export const MAX_CLIENT_MESSAGE_ID_BYTES = 64;
/** Longest franking tag, in bytes. */
export const MAX_REPORT_TAG_BYTES = 64;
/** Most device ciphertexts in one send. */
export const MAX_MESSAGES_PER_SEND = 100;
/** Most ids in one ack. */
export const MAX_ACK_IDS = 1_000;
/** Flow-control window bounds for a device stream. */
export const DEFAULT_WINDOW = 100;
export const MAX_WINDOW = 1_000;
/** Ephemeral messages undelivered after this long are dropped. */
export const EPHEMERAL_TTL_MS = 10_000;
/** Registration ids libsignal generates are 14-bit. */
export const MAX_REGISTRATION_ID = 16_380;
/** Password (device secret) bounds, in bytes. */
export const MIN_PASSWORD_BYTES = 16;
export const MAX_PASSWORD_BYTES = 128;
/** Longest device name, in bytes. */
export const MAX_DEVICE_NAME_BYTES = 64;
/** Most one-time keys of one kind per upload. */
export const MAX_PREKEYS_PER_UPLOAD = 100;
/** Most one-time keys of one kind stored per device. */
export const MAX_PREKEYS_STORED = 1_000;
/** Largest public key or signature accepted, in bytes (Kyber-1024 public keys are 1569). */
export const MAX_KEY_BYTES = 2_048;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Throws INVALID_ARGUMENT with `reason` and `message`. */
export function invalid(reason: string, message: string): AppError {
  return new AppError(Code.InvalidArgument, reason, message);
}

/** Validates a UUID-shaped id (lower-case canonical form) and returns it. */
export function requireUuid(value: string, field: string): string {
  if (!UUID.test(value)) throw invalid("INVALID_ID", `${field} must be a lower-case UUID`);
  return value;
}

/** Validates a device id (>= 1). */
export function requireDeviceId(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 1_000_000)
    throw invalid("INVALID_DEVICE_ID", `${field} must be >= 1`);
  return value;
}

/** Validates a registration id (1..16380). */
export function requireRegistrationId(value: number, field = "registration_id"): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_REGISTRATION_ID)
    throw invalid("INVALID_REGISTRATION_ID", `${field} must be 1..${MAX_REGISTRATION_ID}`);
  return value;
}

const hasControlCharacter = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return true;
  return false;
};

/** Validates a client message id (1..64 bytes, printable). */
export function requireClientMessageId(value: string): string {
  const n = Buffer.byteLength(value);
  if (n === 0 || n > MAX_CLIENT_MESSAGE_ID_BYTES || hasControlCharacter(value))
    throw invalid(
      "INVALID_CLIENT_MESSAGE_ID",
      `client_message_id must be 1-${MAX_CLIENT_MESSAGE_ID_BYTES} printable bytes`,
    );
  return value;
}

/** Validates a ciphertext's size. */
export function requireCiphertext(content: Uint8Array, maxBytes: number, field = "content"): Uint8Array {
  if (content.byteLength === 0) throw invalid("EMPTY_CIPHERTEXT", `${field} must not be empty`);
  if (content.byteLength > maxBytes)
    throw new AppError(
      Code.InvalidArgument,
      "PAYLOAD_TOO_LARGE",
      `${field} is ${content.byteLength} bytes; the limit is ${maxBytes}`,
      {
        metadata: { limit: String(maxBytes) },
      },
    );
  return content;
}

/** Validates a string's byte length. */
export function requireMaxBytes(value: string, max: number, field: string): string {
  if (Buffer.byteLength(value) > max)
    throw invalid("FIELD_TOO_LONG", `${field} must be at most ${max} bytes`);
  return value;
}

/** Validates a window (0 means default). */
export function windowOrDefault(window: number): number {
  if (window === 0) return DEFAULT_WINDOW;
  if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW)
    throw invalid("INVALID_WINDOW", `window must be 1..${MAX_WINDOW}`);
  return window;
}
