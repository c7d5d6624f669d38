// Random field values for comparing a hand-written codec with protobuf-es: typical ones, and the
// edges where a hand-written path must write exactly what protobuf-es writes or fall back to it.
import { create, type DescMessage } from "@bufbuild/protobuf";

/** What the helpers draw from: `seededRandom(seed)` of @switchboard/testkit, so a failure replays. */
export interface RandomSource {
  /** A number in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  /** A UUID-shaped string. */
  uuid(): string;
}

/** Strings protobuf-es writes and reads back as they are: empty, one byte, multi-byte, long, NUL. */
export const TEXT_SAMPLES: readonly string[] = [
  "",
  "a",
  "ünïcødé-🙂",
  "日本語のテキスト",
  "x".repeat(300),
  "NULL",
  "\u0000",
];

/** Strings protobuf-es does not read back as written: lone surrogates, a leading byte order mark. */
export const LOSSY_STRINGS: readonly string[] = [
  "\uFEFFbom",
  "lone \uD800 surrogate",
  "\uDC00x\uD83D",
  "\uFEFF",
];

/** uint32 values at the edges of varint lengths, of int32 and of uint32. */
export const UINT32_SAMPLES: readonly number[] = [
  0,
  1,
  127,
  128,
  16_383,
  16_384,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
];

/**
 * int64 values at the edges of varint lengths, of safe integers (2^53) and of int64, negative ones
 * included (ten bytes on the wire).
 */
export const INT64_SAMPLES: readonly bigint[] = [
  0n,
  1n,
  127n,
  128n,
  1_700_000_000_000n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 56n,
  2n ** 62n,
  -1n,
  -1_700_000_000_000n,
  -(2n ** 63n),
  2n ** 63n - 1n,
];

/** A UUID-shaped string, or (40 %) one of {@link TEXT_SAMPLES}. */
export const randomText = (r: RandomSource): string => (r.next() < 0.6 ? r.uuid() : r.pick(TEXT_SAMPLES));

/**
 * {@link randomText}, or (5 %) one of {@link LOSSY_STRINGS}: for fields a codec must write as
 * protobuf-es does (with U+FFFD) and read by falling back.
 */
export const randomAnyText = (r: RandomSource): string =>
  r.next() < 0.05 ? r.pick(LOSSY_STRINGS) : randomText(r);

/** From 0 to `maxLength - 1` random bytes. */
export const randomBytes = (r: RandomSource, maxLength: number): Uint8Array =>
  Uint8Array.from({ length: r.int(maxLength) }, () => r.int(256));

/** `v`, or (with `odds`) undefined: a field left out, as init objects may. */
export const maybeUnset = <T>(r: RandomSource, v: T, odds = 0.1): T | undefined =>
  r.next() < odds ? undefined : v;

/**
 * `init` as is, or (with `odds`) as the message `create(schema, init)` makes: protobuf-es uses such
 * a message as is, so a codec must too.
 */
export const initOrMessage = <T extends object>(
  r: RandomSource,
  schema: DescMessage,
  init: T,
  odds = 0.25,
): T => (r.next() < odds ? (create(schema, init as never) as unknown as T) : init);

/**
 * A 64-bit value as the bigint it is, or (30 %) as a number when it is a safe integer: the init types
 * say bigint, but protobuf-es takes both, and callers pass both.
 */
export const bigintOrNumber = (r: RandomSource, v: bigint): bigint =>
  r.next() < 0.3 && v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n ? (Number(v) as unknown as bigint) : v;
