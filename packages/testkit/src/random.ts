/** A small seeded generator (xorshift32) for randomized tests, so a failure names the seed that reproduces it. */
export function seededRandom(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  return { next, int, pick };
}

/** What {@link seededRandom} returns. */
export type SeededRandom = ReturnType<typeof seededRandom>;
