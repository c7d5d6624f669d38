import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, test } from "vitest";
import { WIRE_FALLBACK, WIRE_LEN, WIRE_VARINT } from "./wire-reader.js";
import {
  delimitedSize,
  int64Value,
  uint32Value,
  uint64Value,
  varint64Size,
  varintSize,
  wireTag,
  WireWriter,
} from "./wire-writer.js";

/** Every varint length boundary below 2^64, and either side of it. */
const BOUNDARIES = Array.from({ length: 10 }, (_, i) => 2n ** BigInt(7 * i)).flatMap((b) => [
  b - 1n,
  b,
  b + 1n,
]);
const U64 = [...BOUNDARIES.filter((v) => v >= 0n), 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 2n, 2n ** 64n - 1n];

/** Writes with a WireWriter of exactly `size` bytes. */
function written(size: number, write: (w: WireWriter) => void): Uint8Array {
  const w = new WireWriter(2);
  w.start(size);
  write(w);
  const bytes = Uint8Array.from(w.finish());
  w.reset();
  return bytes;
}

describe("WireWriter", () => {
  test("sizes and writes varints as protobuf-es does, at every length boundary", () => {
    for (const v of U64) {
      const expected = new BinaryWriter().uint64(v).finish();
      const value = uint64Value(v, true);
      expect(varint64Size(value)).toBe(expected.length);
      expect(written(expected.length, (w) => w.varint64(value))).toEqual(expected);
      if (v <= BigInt(Number.MAX_SAFE_INTEGER)) {
        expect(varintSize(Number(v))).toBe(expected.length);
        expect(written(expected.length, (w) => w.varint(Number(v)))).toEqual(expected);
      }
    }
  });

  test("writes negative int64s as protobuf-es does: ten bytes of two's complement", () => {
    for (const v of [-1n, -(2n ** 53n), -(2n ** 63n), -1, -(2 ** 40)]) {
      const expected = new BinaryWriter().int64(v).finish();
      const value = int64Value(v, true);
      expect(varint64Size(value)).toBe(10);
      expect(written(10, (w) => w.varint64(value))).toEqual(expected);
    }
  });

  test("writes tags, strings, bytes and nested lengths from its table, growing it as needed", () => {
    const strings = Array.from({ length: 50 }, (_, i) => `id-${i}-ü`);
    const expected = new BinaryWriter();
    expected.tag(1, WIRE_LEN).fork();
    for (const s of strings) expected.tag(2, WIRE_LEN).string(s);
    expected.tag(40, WIRE_LEN).bytes(new Uint8Array([1, 2, 3]));
    expected.join();
    expected.tag(30, WIRE_VARINT).bool(true);
    const bytes = expected.finish();

    const w = new WireWriter(2);
    const entry = w.reserve();
    let body = w.sizeStrings(strings, false);
    body += delimitedSize(3, 2);
    w.set(entry, body);
    w.start(delimitedSize(body) + 3);
    w.byte(wireTag(1, WIRE_LEN));
    w.length();
    w.writeStrings(wireTag(2, WIRE_LEN), strings, false);
    w.writeBytes(wireTag(40, WIRE_LEN), new Uint8Array([1, 2, 3]), false);
    w.writeBool(wireTag(30, WIRE_VARINT), true, false);
    expect(Uint8Array.from(w.finish())).toEqual(bytes);
    w.reset();
  });

  test("rejects a buffer it did not fill", () => {
    const w = new WireWriter();
    w.start(2);
    w.byte(1);
    expect(() => w.finish()).toThrow(WIRE_FALLBACK);
  });
});

describe("wire values", () => {
  test("take unset values of init objects as defaults, and fall back on them in raw messages", () => {
    expect(uint32Value(undefined, false)).toBe(0);
    expect(uint32Value(null, false)).toBe(0);
    expect(() => uint32Value(undefined, true)).toThrow(WIRE_FALLBACK);
    expect(int64Value(null, false)).toBe(0);
    expect(() => int64Value(null, true)).toThrow(WIRE_FALLBACK);
  });

  test("fall back on values protobuf-es would write otherwise or reject", () => {
    for (const v of [-1, 1.5, 2 ** 32, Number.NaN, "5", 5n]) {
      expect(() => uint32Value(v, false)).toThrow(WIRE_FALLBACK);
    }
    for (const v of [-1n, 2n ** 64n, 2 ** 60, -1, "7"]) {
      expect(() => uint64Value(v, false)).toThrow(WIRE_FALLBACK);
    }
    for (const v of [2n ** 63n, -(2n ** 63n) - 1n, 2 ** 60, 1.5]) {
      expect(() => int64Value(v, false)).toThrow(WIRE_FALLBACK);
    }
  });

  test("give 64-bit values as numbers below 2^53 and bigints above", () => {
    expect(uint64Value(5n, true)).toBe(5);
    expect(uint64Value(2n ** 53n, true)).toBe(2n ** 53n);
    expect(int64Value(-1, true)).toBe(2n ** 64n - 1n);
    expect(int64Value(0n, true)).toBe(0);
  });
});
