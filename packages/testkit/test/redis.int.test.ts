import { Redis } from "ioredis";
import { describe, expect, onTestFinished, test } from "vitest";
import { redisTestPrefix, redisUrl } from "../src/index.js";

describe("redisTestPrefix", () => {
  test("returns a different prefix on every call", () => {
    const prefixes = Array.from({ length: 1000 }, () => redisTestPrefix());
    expect(new Set(prefixes).size).toBe(prefixes.length);
    expect(prefixes[0]).toMatch(/^t[0-9a-f]{12}:$/);
  });

  test("keeps keys of different prefixes apart on the provided Redis", async () => {
    const first = new Redis(redisUrl(), { keyPrefix: redisTestPrefix() });
    const second = new Redis(redisUrl(), { keyPrefix: redisTestPrefix() });
    onTestFinished(async () => {
      await first.del("greeting");
      await Promise.all([first.quit(), second.quit()]);
    });

    await first.set("greeting", "hello");

    expect(await first.get("greeting")).toBe("hello");
    expect(await second.get("greeting")).toBeNull();
  });
});
