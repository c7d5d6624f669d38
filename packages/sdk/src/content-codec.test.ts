import { create } from "@bufbuild/protobuf";
import { content } from "@switchboard/proto";
import { describe, expect, it } from "vitest";
import { decodeContent, encodeContent, PADDING_BLOCK_BYTES } from "./content-codec.js";

describe("encodeContent", () => {
  it("pads every size to a multiple of the block and round-trips", () => {
    for (let len = 0; len < 700; len += 7) {
      const text = "x".repeat(len);
      const bytes = encodeContent({ body: { case: "data", value: { text, timestampMs: 1n } } });
      expect(bytes.length % PADDING_BLOCK_BYTES).toBe(0);
      const decoded = decodeContent(bytes);
      expect(decoded.version).toBe(1);
      expect(decoded.body.case === "data" && decoded.body.value.text).toBe(text);
    }
  });

  it("hides the exact length of short messages", () => {
    const a = encodeContent({ body: { case: "data", value: { text: "hi" } } });
    const b = encodeContent({
      body: { case: "data", value: { text: "a longer message of sixty bytes or so......" } },
    });
    expect(a.length).toBe(b.length);
  });

  it("replaces caller-supplied padding", () => {
    const bytes = encodeContent(
      create(content.ContentSchema, { padding: new Uint8Array(1000), body: { case: "typing", value: {} } }),
    );
    expect(bytes.length).toBe(PADDING_BLOCK_BYTES);
  });
});
