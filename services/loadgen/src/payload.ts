// The load generator's payload header: who sent a message and where it stands in the sender's
// sequence. The delivery service treats content as opaque, so the header rides in the clear at the
// start of every payload (random bytes or libsignal ciphertext follow it).
import { randomBytes } from "node:crypto";

/** Bytes of the header at the start of every payload. */
export const HEADER_BYTES = 32;

const MAGIC = 0x53424c47; // "SBLG"
const VERSION = 1;

/** Header flag: the message was a group send. */
export const FLAG_GROUP = 1;

/** What the header carries. */
export interface PayloadHeader {
  /** Random per-run id, so stray messages of another run are recognised. */
  runId: number;
  /** The sending simulated device (index into the run's devices). */
  sender: number;
  /** The sender's sequence number for this message, 1, 2, 3, ... over all its sends. */
  seq: number;
  /**
   * Every send of this sender with a sequence number up to `watermark` had its result (Sent or
   * an error) before this one was issued: a Sent one among them must reach each common recipient
   * device before this one.
   */
  watermark: number;
  /** {@link FLAG_GROUP} or 0. */
  flags: number;
  /** The intended send time, milliseconds since the Unix epoch (informational). */
  intendedEpochMs: number;
}

/** Writes `h` into the first {@link HEADER_BYTES} bytes of `out`. */
export function writeHeader(out: Uint8Array, h: PayloadHeader): void {
  if (out.byteLength < HEADER_BYTES) throw new RangeError(`payload shorter than ${HEADER_BYTES} bytes`);
  const v = new DataView(out.buffer, out.byteOffset, HEADER_BYTES);
  v.setUint32(0, MAGIC);
  v.setUint8(4, VERSION);
  v.setUint8(5, h.flags);
  v.setUint16(6, 0);
  v.setUint32(8, h.runId >>> 0);
  v.setUint32(12, h.sender);
  v.setUint32(16, h.seq);
  v.setUint32(20, h.watermark);
  v.setFloat64(24, h.intendedEpochMs);
}

/** Reads a header, or returns undefined when `content` does not start with one. */
export function readHeader(content: Uint8Array): PayloadHeader | undefined {
  if (content.byteLength < HEADER_BYTES) return undefined;
  const v = new DataView(content.buffer, content.byteOffset, HEADER_BYTES);
  if (v.getUint32(0) !== MAGIC || v.getUint8(4) !== VERSION) return undefined;
  return {
    flags: v.getUint8(5),
    runId: v.getUint32(8),
    sender: v.getUint32(12),
    seq: v.getUint32(16),
    watermark: v.getUint32(20),
    intendedEpochMs: v.getFloat64(24),
  };
}

const POOL_BYTES = 1 << 20;

/**
 * Makes random payloads of a fixed size: the header followed by bytes copied from a 1 MiB random
 * pool at a moving offset (fresh random bytes per message would cost the load generator more CPU
 * than the server spends on them, and the server cannot tell the difference).
 */
export function createRandomPayloads(sizeBytes: number): (h: PayloadHeader) => Uint8Array {
  if (sizeBytes < HEADER_BYTES) throw new RangeError(`--size must be at least ${HEADER_BYTES} bytes`);
  const pool = randomBytes(POOL_BYTES);
  const body = sizeBytes - HEADER_BYTES;
  let offset = 0;
  return (h) => {
    const out = Buffer.allocUnsafe(sizeBytes);
    writeHeader(out, h);
    let written = 0;
    while (written < body) {
      if (offset >= POOL_BYTES) offset = 0;
      const n = Math.min(body - written, POOL_BYTES - offset);
      pool.copy(out, HEADER_BYTES + written, offset, offset + n);
      written += n;
      offset += n;
    }
    offset = (offset + 977) % POOL_BYTES;
    return out;
  };
}

/** Prefixes a header to a body (used for pre-encrypted ciphertexts). */
export function withHeader(h: PayloadHeader, body: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.byteLength);
  writeHeader(out, h);
  out.set(body, HEADER_BYTES);
  return out;
}
