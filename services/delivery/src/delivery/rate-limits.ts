import { AppError, Code } from "@switchboard/errors";
import type { RateLimiter, RateLimitPolicy, RateLimitRequest } from "@switchboard/ratelimit";
import type { Logger } from "pino";

/** The delivery service's rate-limit policies (token buckets; burst = capacity). */
export interface RateLimitPolicies {
  /** Sends per sender device. */
  send: RateLimitPolicy;
  /** Sends per (sender device, recipient account or group) pair. */
  pair: RateLimitPolicy;
  /** Pre-key bundles fetched per requesting account (pre-key draining is an attack). */
  prekeys: RateLimitPolicy;
  /** Registration attempts per handle. */
  register: RateLimitPolicy;
  /** New conversations (first messages to accounts with no relationship) per sender account. */
  newConversation: RateLimitPolicy;
  /** Chats receiving forwarded content per sender account. */
  forward: RateLimitPolicy;
}

/** Builds the policies from per-second rates (capacity: `burstSeconds` worth of tokens). */
export function ratePolicies(c: {
  RATE_SEND_PER_SECOND?: number;
  RATE_PAIR_PER_SECOND?: number;
  RATE_PREKEYS_PER_MINUTE?: number;
  RATE_REGISTER_PER_HOUR?: number;
  RATE_NEW_CONVERSATIONS_PER_HOUR?: number;
  RATE_FORWARDED_CHATS_BURST?: number;
  RATE_FORWARDED_CHATS_PER_HOUR?: number;
}): RateLimitPolicies {
  const send = c.RATE_SEND_PER_SECOND ?? 200;
  const pair = c.RATE_PAIR_PER_SECOND ?? 100;
  const prekeys = c.RATE_PREKEYS_PER_MINUTE ?? 120;
  const register = c.RATE_REGISTER_PER_HOUR ?? 20;
  const conversations = c.RATE_NEW_CONVERSATIONS_PER_HOUR ?? 200;
  const forwards = c.RATE_FORWARDED_CHATS_PER_HOUR ?? 60;
  return {
    send: { name: "send", capacity: send * 5, refillPerSecond: send },
    pair: { name: "pair", capacity: pair * 5, refillPerSecond: pair },
    prekeys: { name: "prekeys", capacity: prekeys, refillPerSecond: prekeys / 60 },
    register: { name: "register", capacity: register, refillPerSecond: register / 3600 },
    newConversation: { name: "newconv", capacity: conversations, refillPerSecond: conversations / 3600 },
    forward: {
      name: "forward",
      capacity: c.RATE_FORWARDED_CHATS_BURST ?? 5,
      refillPerSecond: forwards / 3600,
    },
  };
}

/** The error a denied request gets: RESOURCE_EXHAUSTED, reason RATE_LIMITED, with a retry hint. */
export const rateLimited = (what: string, retryAfterMs: number) =>
  new AppError(
    Code.ResourceExhausted,
    "RATE_LIMITED",
    `${what} rate limit exceeded; retry in ${retryAfterMs} ms`,
    {
      retryAfterMs,
      metadata: { limit: what },
    },
  );

/**
 * Checks groups of buckets in one round trip: entry i of the result is undefined when all of
 * `groups[i]` allowed, else the error to return. Denied groups may still have taken tokens from
 * their other buckets (a denied sender stays throttled). When the limiter itself fails (Redis
 * down) everything is allowed and a warning is logged: availability over strictness.
 */
export async function checkLimits(
  limiter: RateLimiter,
  log: Logger,
  groups: ReadonlyArray<ReadonlyArray<RateLimitRequest>>,
): Promise<Array<AppError | undefined>> {
  const flat = groups.flat();
  if (flat.length === 0) return groups.map(() => undefined);
  let results;
  try {
    results = await limiter.take(flat);
  } catch (err) {
    log.warn({ err }, "rate limiter unavailable; allowing");
    return groups.map(() => undefined);
  }
  let i = 0;
  return groups.map((g) => {
    let denied: AppError | undefined;
    for (const r of g) {
      const res = results[i++];
      if (res && !res.allowed && !denied) denied = rateLimited(r.policy.name, res.retryAfterMs);
    }
    return denied;
  });
}
