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
  /** A UUID-shaped string from the same sequence (not a valid v4: any hex digit anywhere). */
  const uuid = () =>
    [8, 4, 4, 4, 12]
      .map((n) => Array.from({ length: n }, () => "0123456789abcdef"[int(16)]).join(""))
      .join("-");
  return { next, int, pick, uuid };
}

/** What {@link seededRandom} returns. */
export type SeededRandom = ReturnType<typeof seededRandom>;
