// A minimal protobuf wire-format reader for hand-written decoders of hot messages (the delivery
// service's ConnectRequest decoder, the delivery link's ConnectResponse decoder). It reads only
// what such a decoder can return exactly as protobuf-es would; for anything else it throws
// WIRE_FALLBACK, and the decoder hands the bytes to `fromBinary` instead.
import { fromBinary, protoInt64, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/**
 * Thrown by {@link WireReader} (one instance, made once, so throwing it is cheap) when the input is
 * not on the fast path: truncated, a varint too large, a value protobuf-es would read differently.
 * A decoder catching it decodes the same bytes with protobuf-es, which also throws where it should.
 */
export const WIRE_FALLBACK = new Error("not on the fast path: decode with protobuf-es");

/** Wire type of varint fields (`tag & 7`). */
export const WIRE_VARINT = 0;
/** Wire type of length-delimited fields: strings, bytes, messages (`tag & 7`). */
export const WIRE_LEN = 2;

/**
 * Reads protobuf wire format from `buf`, starting at `start`. Every read takes the end of the
 * enclosing message and throws {@link WIRE_FALLBACK} rather than read past it. `bytes` returns
 * views into `buf` (as protobuf-es does).
 */
export class WireReader {
  pos: number;
  private readonly text: Buffer;

  constructor(
    readonly buf: Uint8Array,
    start: number,
  ) {
    this.pos = start;
    this.text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** A varint below 2^53 as a number (larger ones fall back). */
  varint(end: number): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= end) throw WIRE_FALLBACK;
      const b = this.buf[this.pos++] as number;
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw WIRE_FALLBACK;
        return result;
      }
      scale *= 128;
    }
    throw WIRE_FALLBACK;
  }

  /**
   * A field's tag (`field << 3 | wire type`). protobuf-es rejects a tag over five bytes or 2^32
   * (non-minimal encodings of small tags included): those fall back.
   */
  tag(end: number): number {
    const start = this.pos;
    const v = this.varint(end);
    if (v > 0xffffffff || this.pos - start > 5) throw WIRE_FALLBACK;
    return v;
  }

  /** A uint32 field (a larger varint is truncated by protobuf-es: leave that to it). */
  uint32(end: number): number {
    const v = this.varint(end);
    if (v > 0xffffffff) throw WIRE_FALLBACK;
    return v;
  }

  /** An int32 or enum field, non-negative only (a negative one is ten bytes: it falls back). */
  int32(end: number): number {
    const v = this.varint(end);
    if (v > 0x7fffffff) throw WIRE_FALLBACK;
    return v;
  }

  /** An int64 or uint64 field below 2^53 (negative and larger ones fall back). */
  int64(end: number): bigint {
    return BigInt(this.varint(end));
  }

  /** The end of a length-delimited field starting here. */
  delimited(end: number): number {
    const len = this.varint(end);
    const stop = this.pos + len;
    if (stop > end) throw WIRE_FALLBACK;
    return stop;
  }

  /** A string field (invalid UTF-8 and a leading byte order mark fall back). */
  string(end: number): string {
    const stop = this.delimited(end);
    const s = this.text.toString("utf8", this.pos, stop);
    // Invalid UTF-8 decodes to U+FFFD here; protobuf-es has its own rules for it. Its TextDecoder
    // also drops a leading byte order mark, which Buffer keeps.
    if (s.includes("\uFFFD") || s.charCodeAt(0) === 0xfeff) throw WIRE_FALLBACK;
    this.pos = stop;
    return s;
  }

  /** A bytes field, as a view into `buf`. */
  bytes(end: number): Uint8Array {
    const stop = this.delimited(end);
    const b = this.buf.subarray(this.pos, stop);
    this.pos = stop;
    return b;
  }

  /** A bool field (a varint other than 0 or 1 falls back). */
  bool(end: number): boolean {
    const v = this.varint(end);
    if (v > 1) throw WIRE_FALLBACK;
    return v === 1;
  }
}

/**
 * Decodes `bytes` with a hand-written `read` where it can, else with protobuf-es: returns exactly
 * what `fromBinary(schema, bytes)` returns and throws where it throws. `read` throws
 * {@link WIRE_FALLBACK} for anything it does not read exactly as protobuf-es would.
 */
export function readOrFallback<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
  read: (r: WireReader, end: number) => MessageShape<Desc>,
): MessageShape<Desc> {
  // Without bigint support protobuf-es represents 64-bit fields as strings: leave those to it.
  if (!protoInt64.supported) return fromBinary(schema, bytes);
  try {
    return read(new WireReader(bytes, 0), bytes.length);
  } catch (err) {
    if (err === WIRE_FALLBACK) return fromBinary(schema, bytes);
    throw err;
  }
}

/** protobuf-es's default recursion limit of `fromBinary`. */
const RECURSION_LIMIT = 100;

/**
 * Decodes with protobuf-es a message a hand-written decoder met nested `depth` levels deep
 * (`r.buf[start, end)`; `r` moves past it), as `fromBinary` of the whole message reads it: with the
 * recursion limit the levels above it leave. Where it fails on its own bytes, throws
 * {@link WIRE_FALLBACK} so that protobuf-es decodes (or fails on) the whole message: inside the
 * whole, a group started in it may end past its bytes.
 */
export function readNestedOrFallback<Desc extends DescMessage>(
  schema: Desc,
  r: WireReader,
  start: number,
  end: number,
  depth: number,
): MessageShape<Desc> {
  r.pos = end;
  try {
    return fromBinary(schema, r.buf.subarray(start, end), { recursionLimit: RECURSION_LIMIT - depth });
  } catch {
    throw WIRE_FALLBACK;
  }
}
