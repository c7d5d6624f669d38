// The protobuf wire-format writer of the hand-written encoders of hot messages (the delivery link's
// ConnectRequest encoder, the WhatsApp-style Chat codecs of the SDK transport and of the gateway),
// the counterpart of wire-reader.ts. An encoder writes a message in two passes over the same
// objects. Pass 1 takes every value through the `*Value` checks below, which return it as
// `toBinary(create(schema, init))` would write it or throw WIRE_FALLBACK, and records in a
// WireWriter's table, in write order, the size of each nested message and the UTF-8 length of each
// string. Pass 2 fills one buffer of exactly the total size, reading the table back in the same
// order. An encoder that catches WIRE_FALLBACK encodes with protobuf-es instead, so its results are
// always protobuf-es's.
import { WIRE_FALLBACK } from "./wire-reader.js";

type Obj = Record<string, unknown>;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const NO_ITEMS: readonly unknown[] = [];
const NO_BYTES = new Uint8Array(0);
const NO_BUFFER = Buffer.alloc(0);

/** A field's tag: `field << 3 | wireType` (WIRE_VARINT, WIRE_LEN), written as a varint. */
export const wireTag = (field: number, wireType: number): number => (field << 3) | wireType;

/** Bytes of a varint holding `v`, an integer from 0 to 2^53 - 1 (larger ones are bigints). */
export function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 5;
  for (v = Math.floor(v / 0x800000000); v > 0; v = Math.floor(v / 128)) n++;
  return n;
}

/** Bytes of a varint holding a value from {@link uint64Value} or {@link int64Value}. */
export function varint64Size(v: number | bigint): number {
  if (typeof v === "number") return varintSize(v);
  let n = 1;
  while (v > 0x7fn) {
    v >>= 7n;
    n++;
  }
  return n;
}

/**
 * Bytes of a length-delimited field (string, bytes, message) with a body of `bytes` bytes: its tag
 * (one byte for fields 1 to 15, two for 16 to 2047), its length and its body.
 */
export const delimitedSize = (bytes: number, tagBytes = 1): number => tagBytes + varintSize(bytes) + bytes;

// Field values as `toBinary(create(schema, init))` sees them. An object is "raw" when protobuf-es
// uses it as is: it is a message of its type (`create` returns those unchanged), or it sits in a raw
// parent (whose fields `create` never visits). In an init object undefined and null mean unset; in a
// raw one they would reach the binary writer, so they fall back like every value that is not of the
// field's exact type. Each check returns the value to write, or throws WIRE_FALLBACK.

/** A message value or a oneof (`{ case, value }`): any object but an array. */
export function objectValue(v: unknown): Obj {
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Obj;
  throw WIRE_FALLBACK;
}

/**
 * Whether protobuf-es writes a message object `m` as is, called as `isRawMessage(parentRaw,
 * m.$typeName === typeName, m.$unknown)`: its parent is raw, or it is a message of its type. A raw
 * message with unknown fields falls back (toBinary writes them; create drops an init object's).
 * The caller reads `m`'s properties: read here, where the objects of every encoder in the process
 * meet, the reads would turn megamorphic (the SDK's sends encoded 5-10 % slower, measured).
 */
export function isRawMessage(parentRaw: boolean, ownType: boolean, unknownFields: unknown): boolean {
  const raw = parentRaw || ownType;
  if (raw && unknownFields !== undefined) throw WIRE_FALLBACK;
  return raw;
}

/** A string field. */
export function stringValue(v: unknown, raw: boolean): string {
  if (typeof v === "string") return v;
  if (v == null && !raw) return "";
  throw WIRE_FALLBACK;
}

/** A uint32 field: an integer from 0 to 2^32 - 1. */
export function uint32Value(v: unknown, raw: boolean): number {
  if (typeof v === "number" && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) return v;
  if (v == null && !raw) return 0;
  throw WIRE_FALLBACK;
}

/** An enum field; only non-negative values (a negative int32 takes ten bytes: it falls back). */
export function enumValue(v: unknown, raw: boolean): number {
  if (typeof v === "number" && v >= 0 && v <= 0x7fffffff && Number.isInteger(v)) return v;
  if (v == null && !raw) return 0;
  throw WIRE_FALLBACK;
}

/** A bool field. */
export function boolValue(v: unknown, raw: boolean): boolean {
  if (typeof v === "boolean") return v;
  if (v == null && !raw) return false;
  throw WIRE_FALLBACK;
}

/** A bytes field: a Uint8Array (Buffers included). */
export function bytesValue(v: unknown, raw: boolean): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v == null && !raw) return NO_BYTES;
  throw WIRE_FALLBACK;
}

/**
 * A uint64 field, from a bigint or a safe integer (protobuf-es takes both): a number below 2^53,
 * else a bigint (0 is always the number).
 */
export function uint64Value(v: unknown, raw: boolean): number | bigint {
  if (typeof v === "bigint") {
    if (v >= 0n && v <= MAX_SAFE) return Number(v);
    if (v > MAX_SAFE && v <= U64_MAX) return v;
  } else if (typeof v === "number") {
    if (v >= 0 && Number.isSafeInteger(v)) return v;
  } else if (v == null && !raw) return 0;
  throw WIRE_FALLBACK;
}

/**
 * An int64 field, from a bigint or a safe integer (protobuf-es takes both), as the uint64 of its
 * varint: a number below 2^53, else a bigint; negative values are two's complement.
 */
export function int64Value(v: unknown, raw: boolean): number | bigint {
  if (typeof v === "bigint") {
    if (v >= 0n && v <= MAX_SAFE) return Number(v);
    if (v >= I64_MIN && v <= I64_MAX) return BigInt.asUintN(64, v);
  } else if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return v >= 0 ? v : BigInt.asUintN(64, BigInt(v));
  } else if (v == null && !raw) return 0;
  throw WIRE_FALLBACK;
}

/** A singular message field: undefined when unset. */
export function messageValue(v: unknown, raw: boolean): Obj | undefined {
  if (v === undefined || (v === null && !raw)) return undefined;
  return objectValue(v);
}

/** A repeated field: an array (its items are checked by the caller). */
export function listValue(v: unknown, raw: boolean): readonly unknown[] {
  if (Array.isArray(v)) return v;
  if (v == null && !raw) return NO_ITEMS;
  throw WIRE_FALLBACK;
}

/**
 * The two passes' shared state: a table of recorded sizes (pass 1 appends, pass 2 reads in the same
 * order) and the buffer being written. An encoder owns one (every instance has the same shape, so
 * these methods stay monomorphic with several encoders in a process) and calls {@link reset} when
 * done, whether it succeeded or not. Pass-2 methods write without bounds checks: the values were
 * checked and sized in pass 1, and {@link finish} rejects a buffer left short.
 */
export class WireWriter {
  private table: Int32Array;
  private count = 0;
  private next = 0;
  private buf: Buffer = NO_BUFFER;
  private at = 0;

  /** `initialEntries`: the table's starting capacity; it doubles when full. */
  constructor(initialEntries = 64) {
    this.table = new Int32Array(initialEntries);
  }

  // -- pass 1: sizes ---------------------------------------------------------------------------

  /** Appends a table entry to be filled by {@link set} (a nested message's size, known later). */
  reserve(): number {
    if (this.count === this.table.length) this.grow();
    return this.count++;
  }

  /** Fills entry `entry` from {@link reserve}. */
  set(entry: number, value: number): void {
    this.table[entry] = value;
  }

  /** Appends a table entry holding `value`. */
  push(value: number): void {
    if (this.count === this.table.length) this.grow();
    this.table[this.count++] = value;
  }

  private grow(): void {
    const grown = new Int32Array(this.table.length * 2);
    grown.set(this.table);
    this.table = grown;
  }

  /** How many entries the table holds: a mark for {@link truncate}. */
  get recorded(): number {
    return this.count;
  }

  /** Drops the entries recorded since `mark` (a part of the message that fell back on its own). */
  truncate(mark: number): void {
    this.count = mark;
  }

  /**
   * A string field's size with its tag of `tagBytes` (0 when empty, so unset), recording its UTF-8
   * length for {@link writeString}.
   */
  sizeString(v: unknown, raw: boolean, tagBytes = 1): number {
    const s = stringValue(v, raw);
    if (s.length === 0) return 0;
    const n = Buffer.byteLength(s, "utf8");
    this.push(n);
    return delimitedSize(n, tagBytes);
  }

  /**
   * A repeated string field's size, with one-byte tags: every item is written, empty ones too.
   * Records each length for {@link writeStrings}.
   */
  sizeStrings(v: unknown, raw: boolean): number {
    const list = listValue(v, raw);
    let size = 0;
    // Indexed, not for-of: the lists of every encoder in the process meet here, and optimized
    // for-of over arrays of different elements kinds is much slower than indexed reads.
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      if (typeof s !== "string") throw WIRE_FALLBACK;
      const n = s.length === 0 ? 0 : Buffer.byteLength(s, "utf8");
      this.push(n);
      size += delimitedSize(n);
    }
    return size;
  }

  // -- pass 2: bytes ---------------------------------------------------------------------------

  /**
   * Starts pass 2 with a buffer of `size` bytes, from `Buffer.allocUnsafe`: every message gets its
   * own memory (grpc-js may hold a written chunk before copying it).
   */
  start(size: number): void {
    this.buf = Buffer.allocUnsafe(size);
  }

  /**
   * The written message. Throws WIRE_FALLBACK if the buffer is not exactly full: a size the two
   * passes disagree on would be the encoder's bug, and protobuf-es then writes the message.
   */
  finish(): Buffer {
    if (this.at !== this.buf.length) throw WIRE_FALLBACK;
    return this.buf;
  }

  /** Empties the table and lets go of the buffer, for the next message. */
  reset(): void {
    this.count = 0;
    this.next = 0;
    this.at = 0;
    this.buf = NO_BUFFER;
  }

  /** The next table entry, left unread (to tell a size from an encoder's own marker). */
  peek(): number {
    return this.table[this.next] as number;
  }

  /** Reads past the next table entry without writing it. */
  skip(): void {
    this.next++;
  }

  /** One byte. */
  byte(b: number): void {
    this.buf[this.at++] = b;
  }

  /** A field's tag from {@link wireTag}. */
  tag(tag: number): void {
    if (tag < 0x80) this.buf[this.at++] = tag;
    else this.varint(tag);
  }

  /** A varint from 0 to 2^53 - 1. */
  varint(v: number): void {
    const buf = this.buf;
    while (v > 0x7f) {
      buf[this.at++] = (v & 0x7f) | 0x80;
      v = v > 0xffffffff ? Math.floor(v / 128) : v >>> 7;
    }
    buf[this.at++] = v;
  }

  /** A varint from {@link uint64Value} or {@link int64Value}. */
  varint64(v: number | bigint): void {
    if (typeof v === "number") return this.varint(v);
    const buf = this.buf;
    while (v > 0x7fn) {
      buf[this.at++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    buf[this.at++] = Number(v);
  }

  /** The next table entry as a varint: a nested message's length prefix. */
  length(): void {
    this.varint(this.table[this.next++] as number);
  }

  /** Length-prefixed bytes. */
  bytes(b: Uint8Array): void {
    this.varint(b.byteLength);
    this.buf.set(b, this.at);
    this.at += b.byteLength;
  }

  /** A length-prefixed string, whose UTF-8 length is the next table entry. */
  utf8(s: string): void {
    const n = this.table[this.next++] as number;
    this.varint(n);
    if (n > 0) this.at += this.buf.write(s, this.at, n, "utf8");
  }

  /** A string field sized by {@link sizeString}: skipped when empty. */
  writeString(tag: number, v: unknown, raw: boolean): void {
    const s = stringValue(v, raw);
    if (s.length === 0) return;
    this.tag(tag);
    this.utf8(s);
  }

  /** A repeated string field sized by {@link sizeStrings}. */
  writeStrings(tag: number, v: unknown, raw: boolean): void {
    const list = listValue(v, raw);
    for (let i = 0; i < list.length; i++) {
      this.tag(tag);
      this.utf8(list[i] as string);
    }
  }

  /** A bytes field: skipped when empty. */
  writeBytes(tag: number, v: unknown, raw: boolean): void {
    const b = bytesValue(v, raw);
    if (b.byteLength === 0) return;
    this.tag(tag);
    this.bytes(b);
  }

  /** A bool field: skipped when false. */
  writeBool(tag: number, v: unknown, raw: boolean): void {
    if (!boolValue(v, raw)) return;
    this.tag(tag);
    this.byte(1);
  }

  /** A uint32 or enum field from {@link uint32Value} or {@link enumValue}: skipped when 0. */
  writeVarint(tag: number, v: number): void {
    if (v === 0) return;
    this.tag(tag);
    this.varint(v);
  }

  /** A uint64 or int64 field from {@link uint64Value} or {@link int64Value}: skipped when 0. */
  writeVarint64(tag: number, v: number | bigint): void {
    if (v === 0) return;
    this.tag(tag);
    this.varint64(v);
  }
}
