import { randomHex } from "./names.js";
import { requireProvided } from "./provided.js";

/**
 * A fresh key prefix, `t<12 hex>:`, so tests sharing one Redis never see each other's keys.
 * Build every key of the test under it (e.g. pass it as ioredis `keyPrefix`).
 */
export function redisTestPrefix(): string {
  return `t${randomHex(6)}:`;
}

/** The Redis URL `createGlobalSetup` provided. Throws if the package does not wire it. */
export function redisUrl(): string {
  return requireProvided("redisUrl");
}
