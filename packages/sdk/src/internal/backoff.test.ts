import { describe, expect, test } from "vitest";
import { reconnectDelayMs } from "./backoff.js";

describe("reconnectDelayMs", () => {
  const bounds = { initial: 500, max: 30_000 };

  test("doubles the ceiling per attempt up to the maximum", () => {
    const top = () => 0.999_999;
    expect(reconnectDelayMs(0, bounds, top)).toBe(499);
    expect(reconnectDelayMs(1, bounds, top)).toBe(999);
    expect(reconnectDelayMs(3, bounds, top)).toBe(3999);
    expect(reconnectDelayMs(10, bounds, top)).toBe(29_999);
    expect(reconnectDelayMs(1000, bounds, top)).toBe(29_999);
  });

  test("spreads delays over the whole interval (full jitter)", () => {
    expect(reconnectDelayMs(4, bounds, () => 0)).toBe(0);
    expect(reconnectDelayMs(4, bounds, () => 0.5)).toBe(4000);
    const delays = new Set(Array.from({ length: 200 }, () => reconnectDelayMs(6, bounds)));
    expect(delays.size).toBeGreaterThan(100);
    for (const d of delays) expect(d >= 0 && d < 30_000).toBe(true);
  });
});
