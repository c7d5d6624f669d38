// A small seeded PRNG (mulberry32) so that every fuzz run with the same seed throws the same cases.

/** A seeded random source. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [min, max]. */
  int(min: number, max: number): number;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
  /** `n` random bytes. */
  bytes(n: number): Buffer;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

/** Creates a PRNG from a 32-bit seed. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  return {
    next,
    int,
    pick: <T>(items: readonly T[]) => items[int(0, items.length - 1)] as T,
    bytes(n) {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = int(0, 255);
      return out;
    },
    chance: (p) => next() < p,
  };
}

/** Path-traversal-ish and otherwise hostile identifiers for path parameters and id fields. */
export const HOSTILE_IDS: readonly string[] = [
  "..",
  "../../etc/passwd",
  "..%2F..%2Fetc%2Fpasswd",
  "%2e%2e%2f%2e%2e%2f",
  "%00",
  "a%00b",
  "%ff%fe",
  "%c0%af",
  "1e308",
  "-1",
  "0",
  "99999999999999999999999999",
  "NaN",
  "null",
  "undefined",
  "[object Object]",
  "' OR '1'='1",
  '"; DROP TABLE accounts; --',
  "$(reboot)",
  "<script>alert(1)</script>",
  "%E2%80%AE",
  "%F0%9F%92%A9",
  "x".repeat(2_000),
  "00000000-0000-0000-0000-000000000000",
  "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
  "~root",
  "%2F",
  "\\\\server\\share",
];
