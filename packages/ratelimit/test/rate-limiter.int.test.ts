import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, test } from "vitest";
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from "../src/index.js";

const policy = { name: "t", capacity: 3, refillPerSecond: 10 };
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const redis = createRedisRateLimiter({ url: redisUrl, keyPrefix: `t${randomBytes(5).toString("hex")}:` });
const memory = createMemoryRateLimiter();
afterAll(() => redis.close());

describe.each<[string, () => RateLimiter]>([
  ["redis", () => redis],
  ["memory", () => memory],
])("%s rate limiter", (_name, limiter) => {
  test("allows a burst up to capacity, then denies with a retry-after", async () => {
    const subject = randomBytes(4).toString("hex");
    const r = await limiter().take(Array.from({ length: 5 }, () => ({ policy, subject })));
    expect(r.map((x) => x.allowed)).toEqual([true, true, true, false, false]);
    expect(r[3]?.retryAfterMs).toBeGreaterThan(0);
    expect(r[3]?.retryAfterMs).toBeLessThanOrEqual(100);
  });

  test("takes from buckets of several policies and costs in one call, each by its own policy", async () => {
    const subject = randomBytes(4).toString("hex");
    const slow = { name: "slow", capacity: 1, refillPerSecond: 1 };
    const r = await limiter().take([
      { policy, subject, cost: 2 },
      { policy: slow, subject },
      { policy, subject, cost: 2 },
      { policy: slow, subject },
      { policy, subject },
    ]);
    expect(r.map((x) => x.allowed)).toEqual([true, true, false, false, true]);
    // The third asked 2 of `policy`'s 1 token (10/s): 100 ms; the fourth 1 of `slow`'s 0 (1/s): 1 s.
    expect(r[2]?.retryAfterMs).toBeGreaterThan(50);
    expect(r[2]?.retryAfterMs).toBeLessThanOrEqual(100);
    expect(r[3]?.retryAfterMs).toBeGreaterThan(900);
    expect(r[3]?.retryAfterMs).toBeLessThanOrEqual(1000);
  });

  test("refills over time and keeps subjects apart", async () => {
    const a = randomBytes(4).toString("hex");
    const b = randomBytes(4).toString("hex");
    await limiter().take(Array.from({ length: 3 }, () => ({ policy, subject: a })));
    const [denied, other] = await limiter().take([
      { policy, subject: a },
      { policy, subject: b },
    ]);
    expect(denied?.allowed).toBe(false);
    expect(other?.allowed).toBe(true);
    await new Promise((r) => setTimeout(r, 250));
    const [again] = await limiter().take([{ policy, subject: a }]);
    expect(again?.allowed).toBe(true);
  });
});
