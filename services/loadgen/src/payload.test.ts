import { describe, expect, test } from "vitest";
import { createRandomPayloads, HEADER_BYTES, readHeader, withHeader, type PayloadHeader } from "./payload.js";

const header: PayloadHeader = {
  runId: 0xdeadbeef,
  sender: 42,
  seq: 7,
  watermark: 5,
  flags: 1,
  intendedEpochMs: 1_700_000_000_123.5,
};

describe("payload header", () => {
  test("round-trips through random payloads of the requested size", () => {
    const make = createRandomPayloads(300);
    const p = make(header);
    expect(p.byteLength).toBe(300);
    expect(readHeader(p)).toEqual(header);
    expect(make(header).subarray(HEADER_BYTES)).not.toEqual(p.subarray(HEADER_BYTES));
  });

  test("prefixes a ciphertext", () => {
    const body = new Uint8Array([1, 2, 3]);
    const p = withHeader(header, body);
    expect(p.byteLength).toBe(HEADER_BYTES + 3);
    expect(readHeader(p)).toEqual(header);
    expect([...p.subarray(HEADER_BYTES)]).toEqual([1, 2, 3]);
  });

  test("rejects content without a header", () => {
    expect(readHeader(new Uint8Array(10))).toBeUndefined();
    expect(readHeader(new Uint8Array(64))).toBeUndefined();
  });

  test("rejects a size below the header", () => {
    expect(() => createRandomPayloads(HEADER_BYTES - 1)).toThrow(RangeError);
  });
});
