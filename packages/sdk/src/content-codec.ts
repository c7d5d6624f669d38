// Serialising Content with padding, so ciphertext length reveals only a coarse size bucket.
import { randomFillSync } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { content } from "@switchboard/proto";

/** Serialized, padded Content is a multiple of this many bytes. */
export const PADDING_BLOCK_BYTES = 160;

/** The Content format version this SDK writes. */
export const CONTENT_VERSION = 1;

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    len += 1;
  }
  return len;
}

/**
 * Serializes a Content message with random `padding` (field 15) sized so the result is a multiple
 * of PADDING_BLOCK_BYTES. Sets `version` to CONTENT_VERSION and replaces any padding given.
 */
export function encodeContent(
  message: MessageInitShape<typeof content.ContentSchema>,
): Uint8Array<ArrayBuffer> {
  const msg = create(content.ContentSchema, message);
  msg.version = CONTENT_VERSION;
  msg.padding = new Uint8Array(0);
  const bare = toBinary(content.ContentSchema, msg).length;
  // Field 15, wire type 2: a one-byte tag, a varint length, then at least one padding byte
  // (proto3 omits empty bytes, which would leave the result short of the block).
  let target = Math.ceil((bare + 3) / PADDING_BLOCK_BYTES) * PADDING_BLOCK_BYTES;
  for (;;) {
    let padding = -1;
    for (let lenBytes = 1; lenBytes <= 3; lenBytes++) {
      const n = target - bare - 1 - lenBytes;
      if (n >= 1 && varintLength(n) === lenBytes) {
        padding = n;
        break;
      }
    }
    if (padding >= 0) {
      const bytes = new Uint8Array(padding);
      randomFillSync(bytes);
      msg.padding = bytes;
      return new Uint8Array(toBinary(content.ContentSchema, msg));
    }
    target += PADDING_BLOCK_BYTES;
  }
}

/** Parses decrypted Content bytes (padding is ignored). Throws on malformed input. */
export function decodeContent(bytes: Uint8Array): content.Content {
  const msg = fromBinary(content.ContentSchema, bytes);
  msg.padding = new Uint8Array(0);
  return msg;
}
