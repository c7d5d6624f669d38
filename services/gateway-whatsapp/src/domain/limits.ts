// The gateway's limits, with their defaults. buildApp takes overrides (tests shorten windows).

/** Registration and chat limits. Durations in milliseconds. */
export interface GatewayLimits {
  /** How long a verification code is valid. */
  codeTtlMs: number;
  /** Wrong guesses allowed per code; the code is then invalidated. */
  codeMaxAttempts: number;
  /** Rate-limit window for code requests per phone number. */
  codeWindowMs: number;
  /** Codes a phone number may request per window. */
  codeRequestsPerWindow: number;
  /** How long a link code is valid. */
  linkCodeTtlMs: number;
  /** The delivery window per chat stream: unacknowledged messages in flight (1..1000). */
  chatWindow: number;
  /** Sends one chat stream may have waiting for their result before it stops reading frames. */
  maxPendingSends: number;
}

/** The defaults: 10-minute codes, 5 attempts, 5 codes per number per hour, 5-minute link codes. */
export const DEFAULT_LIMITS: Readonly<GatewayLimits> = Object.freeze({
  codeTtlMs: 10 * 60_000,
  codeMaxAttempts: 5,
  codeWindowMs: 60 * 60_000,
  codeRequestsPerWindow: 5,
  linkCodeTtlMs: 5 * 60_000,
  chatWindow: 100,
  maxPendingSends: 64,
});

/** Signal registration ids are 1..16380. */
export function isRegistrationId(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 16380;
}

/** Longest device name the delivery service stores, in bytes. */
export const MAX_DEVICE_NAME_BYTES = 64;
