import { describe, expect, test } from "vitest";
import { TtlCache } from "./ttl-cache.js";

describe("TtlCache", () => {
  test("returns values until they expire", () => {
    let now = 0;
    const cache = new TtlCache<string, number>(10, 100, () => now);
    cache.set("a", 1);
    now = 99;
    expect(cache.get("a")).toBe(1);
    now = 100;
    expect(cache.get("a")).toBeUndefined();
  });

  test("evicts the oldest entry when full", () => {
    const cache = new TtlCache<string, number>(2, 1000);
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("c", 3);
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([undefined, 2, 3]);
  });
});
