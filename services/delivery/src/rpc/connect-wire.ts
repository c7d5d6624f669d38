// Hand-written encoding of the most frequent Connect response, a successful one-to-one send:
// ConnectResponse { send_result (3): SendResult { correlation_id (1), send (2):
// SendMessageResponse { sent (1): Sent { message_id (1), server_timestamp_ms (2), duplicate (3) } } } }.
// Byte for byte what protobuf-es writes (checked by connect-wire.test.ts), without building and
// reflecting over four message objects per send. The unary `SendMessage` answer is the inner
// SendMessageResponse of the same frame. Sizes come from the shared wire writer's helpers.
import { varint64Size, varintSize } from "@switchboard/grpc";

function writeVarint(buf: Buffer, at: number, v: bigint | number): number {
  if (typeof v === "number" && v < 2 ** 31) {
    while (v >= 0x80) {
      buf[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[at++] = v;
    return at;
  }
  let x = BigInt.asUintN(64, BigInt(v));
  while (x >= 0x80n) {
    buf[at++] = Number(x & 0x7fn) | 0x80;
    x >>= 7n;
  }
  buf[at++] = Number(x);
  return at;
}

/** The committed outcome of a one-to-one send, as the send pipeline reports it. */
export interface SentOutcome {
  messageId: string;
  serverTimestampMs: number;
  duplicate: boolean;
}

/** A stored send's `SendMessageResponse { sent (1): Sent { … } }`, measured once for writing. */
interface SentSizes {
  idBytes: number;
  ts: bigint;
  /** Bytes of the `Sent` message. */
  sent: number;
  /** Bytes of the `SendMessageResponse` around it. */
  response: number;
}

function sentSizes(sent: SentOutcome): SentSizes {
  const idBytes = Buffer.byteLength(sent.messageId, "utf8");
  const ts = BigInt(sent.serverTimestampMs);
  const sentSize =
    (idBytes > 0 ? 1 + varintSize(idBytes) + idBytes : 0) +
    (ts !== 0n ? 1 + varint64Size(BigInt.asUintN(64, ts)) : 0) +
    (sent.duplicate ? 2 : 0);
  return { idBytes, ts, sent: sentSize, response: 1 + varintSize(sentSize) + sentSize };
}

/** Writes the `SendMessageResponse` measured by `size` at `at`; returns the end. */
function writeSentResponse(buf: Buffer, at: number, sent: SentOutcome, size: SentSizes): number {
  buf[at++] = (1 << 3) | 2;
  at = writeVarint(buf, at, size.sent);
  if (size.idBytes > 0) {
    buf[at++] = (1 << 3) | 2;
    at = writeVarint(buf, at, size.idBytes);
    at += buf.write(sent.messageId, at, size.idBytes, "utf8");
  }
  if (size.ts !== 0n) {
    buf[at++] = (2 << 3) | 0;
    at = writeVarint(buf, at, size.ts);
  }
  if (sent.duplicate) {
    buf[at++] = (3 << 3) | 0;
    buf[at++] = 1;
  }
  return at;
}

/** Encodes `ConnectResponse.send_result` for a one-to-one send that was stored (`Sent`). */
export function encodeSentResult(correlationId: bigint, sent: SentOutcome): Buffer {
  const size = sentSizes(sent);
  const resultSize =
    (correlationId !== 0n ? 1 + varint64Size(correlationId) : 0) +
    1 +
    varintSize(size.response) +
    size.response;
  const buf = Buffer.allocUnsafe(1 + varintSize(resultSize) + resultSize);
  let at = 0;
  buf[at++] = (3 << 3) | 2;
  at = writeVarint(buf, at, resultSize);
  if (correlationId !== 0n) {
    buf[at++] = (1 << 3) | 0;
    at = writeVarint(buf, at, correlationId);
  }
  buf[at++] = (2 << 3) | 2;
  at = writeVarint(buf, at, size.response);
  at = writeSentResponse(buf, at, sent, size);
  if (at !== buf.byteLength) throw new Error(`send result size mismatch: ${at} != ${buf.byteLength}`);
  return buf;
}

/**
 * Encodes the unary `SendMessage` response for a one-to-one send that was stored: the same
 * `SendMessageResponse` bytes a `send_result` frame carries.
 */
export function encodeSentResponse(sent: SentOutcome): Buffer {
  const size = sentSizes(sent);
  const buf = Buffer.allocUnsafe(size.response);
  const at = writeSentResponse(buf, 0, sent, size);
  if (at !== buf.byteLength) throw new Error(`send response size mismatch: ${at} != ${buf.byteLength}`);
  return buf;
}

/** At most this many frames go into one ConnectResponseBatch. */
export const MAX_BATCH_FRAMES = 256;
/** A batch is flushed once its frames reach this many bytes (a larger frame goes alone). */
export const MAX_BATCH_BYTES = 1 << 20;

/**
 * Encodes `ConnectResponse { batch (6): ConnectResponseBatch { frames (1): ConnectResponse… } }`
 * around already encoded ConnectResponse frames: each frame is copied once behind its tag and
 * length, with no decoding.
 */
export function encodeResponseBatch(frames: readonly Uint8Array[]): Buffer {
  let inner = 0;
  for (const f of frames) inner += 1 + varintSize(f.byteLength) + f.byteLength;
  const buf = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
  let at = 0;
  buf[at++] = (6 << 3) | 2;
  at = writeVarint(buf, at, inner);
  for (const f of frames) {
    buf[at++] = (1 << 3) | 2;
    at = writeVarint(buf, at, f.byteLength);
    buf.set(f, at);
    at += f.byteLength;
  }
  return buf;
}

/**
 * Gathers the frames written during one turn of the event loop and writes them as one
 * ConnectResponseBatch (or as they are, when only one is ready), in order. Bounded by
 * {@link MAX_BATCH_FRAMES} and {@link MAX_BATCH_BYTES}: a full batch is written at once.
 */
export function createFrameBatcher(write: (bytes: Uint8Array) => void): (frame: Uint8Array) => void {
  let frames: Uint8Array[] = [];
  let bytes = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (frames.length === 0) return;
    const out = frames;
    frames = [];
    bytes = 0;
    write(out.length === 1 ? (out[0] as Uint8Array) : encodeResponseBatch(out));
  };
  return (frame) => {
    if (bytes + frame.byteLength > MAX_BATCH_BYTES) flush();
    frames.push(frame);
    bytes += frame.byteLength;
    if (frames.length >= MAX_BATCH_FRAMES || bytes >= MAX_BATCH_BYTES) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}
