import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { configureTextEncoding, getTextEncoding } from "@bufbuild/protobuf/wire";
import { HandleSchema } from "@switchboard/proto";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { useBufferTextEncoding } from "./text-encoding.js";

const SAMPLES = [
  "",
  "0b7a1a0e-6a4e-4a55-9b0e-2a7a3e1f0c11",
  "+4915112345678@s.whatsapp.net",
  "ünïcødé ✓ 🚀",
  "lone \ud800 surrogate",
];

describe("useBufferTextEncoding", () => {
  let saved: ReturnType<typeof getTextEncoding>;
  beforeEach(() => {
    saved = getTextEncoding();
  });
  afterEach(() => {
    configureTextEncoding(saved);
  });

  test("encodes strings to the same bytes as TextEncoder", () => {
    useBufferTextEncoding();
    const te = new TextEncoder();
    for (const s of SAMPLES) expect(new Uint8Array(getTextEncoding().encodeUtf8(s))).toEqual(te.encode(s));
  });

  test("produces the same wire bytes and round-trips messages", () => {
    const before = SAMPLES.map((value) =>
      toBinary(HandleSchema, create(HandleSchema, { value, providerId: value })),
    );
    useBufferTextEncoding();
    useBufferTextEncoding();
    SAMPLES.forEach((value, i) => {
      const bytes = toBinary(HandleSchema, create(HandleSchema, { value, providerId: value }));
      expect(bytes).toEqual(before[i]);
      const back = fromBinary(HandleSchema, bytes);
      expect(back.value).toBe(new TextDecoder().decode(new TextEncoder().encode(value)));
    });
  });

  test("keeps the UTF-8 check", () => {
    useBufferTextEncoding();
    expect(getTextEncoding().checkUtf8("ok")).toBe(true);
    expect(getTextEncoding().checkUtf8("lone \ud800")).toBe(false);
  });
});
