/**
 * A small seeded generator (xorshift32) for randomized tests, so a failure names the seed that
 * reproduces it. The seed is hashed first: xorshift32 started from a small number stays near 0 for
 * its first draws (below 0.07 for every seed up to 1,000), so a test making one generator per seed
 * would take the same branch on every first draw.
 */
export function seededRandom(seed: number) {
  let s = mixSeed(seed);
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  /** A UUID-shaped string from the same sequence (not a valid v4: any hex digit anywhere). */
  const uuid = () =>
    [8, 4, 4, 4, 12]
      .map((n) => Array.from({ length: n }, () => "0123456789abcdef"[int(16)]).join(""))
      .join("-");
  return { next, int, pick, uuid };
}

/** What {@link seededRandom} returns. */
export type SeededRandom = ReturnType<typeof seededRandom>;

/** lowbias32, a 32-bit hash: different seeds start different sequences (seed 0 aside); never 0. */
function mixSeed(seed: number): number {
  let h = seed >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0 || 1;
}
