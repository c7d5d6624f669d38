// Message franking (Facebook-style): the sender commits to the plaintext with a per-message key
// inside the end-to-end-encrypted content; the server binds that commitment to the routing
// metadata it saw; a report opens both.
import { createHmac, timingSafeEqual } from "node:crypto";

/** Bytes of an HMAC-SHA256 output: the size of a commitment and of a server tag. */
export const FRANKING_TAG_BYTES = 32;
/** Franking keys are 16..64 bytes (the SDK uses 32). */
export const MIN_FRANKING_KEY_BYTES = 16;
export const MAX_FRANKING_KEY_BYTES = 64;

const DOMAIN = Buffer.from("switchboard-franking-v1");

/** What the server tag binds: the commitment and the metadata the server routed it with. */
export interface FrankingInput {
  /** The sender's commitment (Envelope.report_tag). */
  commitment: Uint8Array;
  /** The sending account, or "" for a sealed-sender message. */
  sourceAccountId: string;
  /** The sending device, or 0 for a sealed-sender message. */
  sourceDeviceId: number;
  /** The recipient account. */
  destinationAccountId: string;
  /** Commit time, ms since the epoch. */
  serverTimestampMs: number;
  /** Server message id. */
  messageId: string;
}

/** Computes and checks server franking tags with one server secret. */
export interface Franker {
  /** HMAC-SHA256(secret, encoding of `input`): 32 bytes. */
  tag(input: FrankingInput): Uint8Array;
  /** Constant-time check of a presented tag. */
  verify(input: FrankingInput, tag: Uint8Array): boolean;
}

function field(h: ReturnType<typeof createHmac>, bytes: Uint8Array) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.byteLength);
  h.update(len);
  h.update(bytes);
}

/**
 * Creates a franker over `secret` (at least 32 bytes). The encoding is length-prefixed, so no
 * two different inputs hash the same bytes.
 */
export function createFranker(secret: Uint8Array): Franker {
  if (secret.byteLength < 32) throw new Error("franking secret must be at least 32 bytes");
  const key = Buffer.from(secret);
  const tag = (input: FrankingInput): Uint8Array => {
    const h = createHmac("sha256", key);
    h.update(DOMAIN);
    field(h, input.commitment);
    field(h, Buffer.from(input.sourceAccountId, "utf8"));
    const nums = Buffer.alloc(12);
    nums.writeUInt32BE(input.sourceDeviceId >>> 0, 0);
    nums.writeBigInt64BE(BigInt(input.serverTimestampMs), 4);
    h.update(nums);
    field(h, Buffer.from(input.destinationAccountId, "utf8"));
    field(h, Buffer.from(input.messageId, "utf8"));
    return new Uint8Array(h.digest());
  };
  return {
    tag,
    verify(input, presented) {
      const expected = tag(input);
      return presented.byteLength === expected.byteLength && timingSafeEqual(expected, presented);
    },
  };
}

/** The sender's commitment: HMAC-SHA256(franking key, plaintext). */
export function frankingCommitment(frankingKey: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", Buffer.from(frankingKey)).update(plaintext).digest());
}

/** Constant-time check that `frankingKey` and `plaintext` open `commitment`. */
export function opensCommitment(
  commitment: Uint8Array,
  frankingKey: Uint8Array,
  plaintext: Uint8Array,
): boolean {
  const expected = frankingCommitment(frankingKey, plaintext);
  return commitment.byteLength === expected.byteLength && timingSafeEqual(expected, commitment);
}
