import { describe, expect, test } from "vitest";
import { seededRandom } from "./random.js";

describe("seededRandom", () => {
  test("replays the same sequence for the same seed", () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    expect(Array.from({ length: 5 }, a.next)).toEqual(Array.from({ length: 5 }, b.next));
    expect(a.uuid()).toBe(b.uuid());
  });

  test("spreads the first draws of small seeds over [0, 1)", () => {
    // Unhashed, xorshift32 drew below 0.07 first for every one of these seeds.
    const first = Array.from({ length: 1000 }, (_, i) => seededRandom(i + 1).next());
    expect(first.filter((x) => x >= 0.8).length).toBeGreaterThan(150);
    expect(first.filter((x) => x < 0.2).length).toBeGreaterThan(150);
    expect(first.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  test("starts a sequence from seed 0 too", () => {
    const r = seededRandom(0);
    expect(new Set(Array.from({ length: 10 }, r.next)).size).toBe(10);
  });
});
