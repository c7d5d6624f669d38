import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { WireReader as Reader } from "@switchboard/grpc";
import { readOrFallback, WIRE_FALLBACK as FALLBACK, WIRE_LEN, WIRE_VARINT } from "@switchboard/grpc";
import { whatsapp } from "@switchboard/proto";

// The Chat stream's hot frames without protobuf-es reflection, as the delivery service's
// connect-decode.ts and the delivery link's connect-codec.ts do for Connect: `send` and `ack`
// requests are read straight into message objects, and `message`, `sendAck`, `receipt` and
// `queueDrained` responses are written straight to wire format. Under load protobuf-es was ~7.4 %
// of the gateway's CPU samples (~12 % of its busy time): `toBinary` of an IncomingChat frame with
// 256 bytes of ciphertext took 9.4 µs, of a SendAck 4.5 µs, `fromBinary` of a send 2.7 µs; these
// take 0.4–1.9 µs per frame (2–5 times less), and the gateway's CPU per WhatsApp-style send fell by
// 15–23 % with both halves of the stream written this way (docs/benchmarks.md, thirteenth round).
// Anything else — another frame kind, an unknown field, a repeated singular message, a value
// protobuf-es would read or write differently — goes to protobuf-es, so the results always equal
// `fromBinary(ChatRequestSchema, bytes)` and `toBinary(ChatResponseSchema,
// create(ChatResponseSchema, { frame }))` (chat-codec.test.ts checks both on random input and fails
// when one of these messages gains a field).

type ChatResponseFrame = MessageInitShape<typeof whatsapp.ChatResponseSchema>["frame"];
type Obj = Record<string, unknown>;

/**
 * The fields of every message this codec reads or writes, as it was written for them, including
 * those it leaves to protobuf-es (chat-codec.test.ts fails when a schema differs: a new field would
 * fall back on every frame that sets it, or be missing from the decoder's objects, or be dropped by
 * the encoder). Update both together.
 */
export const CHAT_CODEC_MESSAGE_FIELDS: Readonly<Record<string, readonly number[]>> = {
  // Decoded: send (1) and ack (2).
  "switchboard.gateway.whatsapp.v1.ChatRequest": [1, 2],
  "switchboard.gateway.whatsapp.v1.OutgoingChat": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  "switchboard.gateway.whatsapp.v1.DeviceCiphertext": [1, 2, 3, 4],
  "switchboard.gateway.whatsapp.v1.ChatAck": [1],
  // Encoded: message (1), send_ack (2), receipt (3) and queue_drained (4); error (5) falls back.
  "switchboard.gateway.whatsapp.v1.ChatResponse": [1, 2, 3, 4, 5],
  "switchboard.gateway.whatsapp.v1.IncomingChat": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30, 40],
  "switchboard.gateway.whatsapp.v1.SendAck": [1, 2, 3, 4, 5, 6, 7],
  "switchboard.gateway.whatsapp.v1.ServerReceipt": [1, 2, 3, 4],
  "switchboard.gateway.whatsapp.v1.QueueDrained": [],
};

const tag = (field: number, wire: number) => (field << 3) | wire;

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes one Chat stream request: exactly what `fromBinary(ChatRequestSchema, bytes)` returns,
 * throwing where it throws. `send` and `ack` frames are read directly; anything unusual (unknown
 * fields, repeated singular messages, invalid UTF-8, negative or large 64-bit values, ...) is
 * decoded by protobuf-es.
 */
export function decodeChatRequest(bytes: Uint8Array): whatsapp.ChatRequest {
  return readOrFallback(whatsapp.ChatRequestSchema, bytes, readChatRequest);
}

function readChatRequest(r: Reader, end: number): whatsapp.ChatRequest {
  let frame: whatsapp.ChatRequest["frame"] = { case: undefined };
  while (r.pos < end) {
    const t = r.tag(end);
    // A oneof set twice replaces or merges: leave that to protobuf-es.
    if (frame.case !== undefined) throw FALLBACK;
    if (t === tag(1, WIRE_LEN)) frame = { case: "send", value: readOutgoingChat(r, r.delimited(end)) };
    else if (t === tag(2, WIRE_LEN)) frame = { case: "ack", value: readChatAck(r, r.delimited(end)) };
    else throw FALLBACK;
  }
  return { $typeName: "switchboard.gateway.whatsapp.v1.ChatRequest", frame };
}

function readOutgoingChat(r: Reader, end: number): whatsapp.OutgoingChat {
  // Keys in protobuf-es's order (declaration order), for the same shape.
  const m: whatsapp.OutgoingChat = {
    $typeName: "switchboard.gateway.whatsapp.v1.OutgoingChat",
    id: "",
    to: "",
    participants: [],
    groupCiphertext: new Uint8Array(0),
    t: 0n,
    ephemeral: false,
    forwarded: false,
    reportTag: new Uint8Array(0),
    urgent: false,
    noServerReceipt: false,
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.id = r.string(end);
        break;
      case tag(2, WIRE_LEN):
        m.to = r.string(end);
        break;
      case tag(3, WIRE_LEN):
        m.participants.push(readDeviceCiphertext(r, r.delimited(end)));
        break;
      case tag(4, WIRE_LEN):
        m.groupCiphertext = r.bytes(end);
        break;
      case tag(5, WIRE_VARINT):
        // int64: a negative value is ten bytes long (falls back); anything below 2^53 is exact.
        m.t = r.int64(end);
        break;
      case tag(6, WIRE_VARINT):
        m.ephemeral = r.bool(end);
        break;
      case tag(7, WIRE_VARINT):
        m.forwarded = r.bool(end);
        break;
      case tag(8, WIRE_LEN):
        m.reportTag = r.bytes(end);
        break;
      case tag(9, WIRE_VARINT):
        m.urgent = r.bool(end);
        break;
      case tag(10, WIRE_VARINT):
        m.noServerReceipt = r.bool(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readDeviceCiphertext(r: Reader, end: number): whatsapp.DeviceCiphertext {
  const m: whatsapp.DeviceCiphertext = {
    $typeName: "switchboard.gateway.whatsapp.v1.DeviceCiphertext",
    jid: "",
    registrationId: 0,
    kind: 0,
    ciphertext: new Uint8Array(0),
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.jid = r.string(end);
        break;
      case tag(2, WIRE_VARINT):
        m.registrationId = r.uint32(end);
        break;
      case tag(3, WIRE_VARINT):
        // An enum is an int32: only non-negative values here (others fall back).
        m.kind = r.int32(end);
        break;
      case tag(4, WIRE_LEN):
        m.ciphertext = r.bytes(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readChatAck(r: Reader, end: number): whatsapp.ChatAck {
  const m: whatsapp.ChatAck = { $typeName: "switchboard.gateway.whatsapp.v1.ChatAck", ids: [] };
  while (r.pos < end) {
    if (r.tag(end) !== tag(1, WIRE_LEN)) throw FALLBACK;
    m.ids.push(r.string(end));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const T_INCOMING = "switchboard.gateway.whatsapp.v1.IncomingChat";
const T_SEND_ACK = "switchboard.gateway.whatsapp.v1.SendAck";
const T_RECEIPT = "switchboard.gateway.whatsapp.v1.ServerReceipt";
const T_QUEUE_DRAINED = "switchboard.gateway.whatsapp.v1.QueueDrained";

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const NO_ITEMS: readonly unknown[] = [];
const NO_BYTES = new Uint8Array(0);
const NO_BUFFER = Buffer.alloc(0);

function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 5;
  for (v = Math.floor(v / 0x800000000); v > 0; v = Math.floor(v / 128)) n++;
  return n;
}

/** Size of a varint holding a value from {@link i64}. */
function varint64Size(v: number | bigint): number {
  if (typeof v === "number") return varintSize(v);
  let n = 1;
  while (v > 0x7fn) {
    v >>= 7n;
    n++;
  }
  return n;
}

/** Size of a length-delimited field body of `bytes` bytes, with its length (not its tag). */
const delimitedSize = (bytes: number) => varintSize(bytes) + bytes;

// Field values as `toBinary(create(ChatResponseSchema, { frame }))` sees them. A frame's value is
// "raw" when it is a message of its type (made by `create`, as translate.ts does): protobuf-es then
// uses it as is. In an init object undefined and null mean unset; in a raw one they would reach the
// binary writer, so they fall back like every value that is not of the field's exact type.

function asObject(v: unknown): Obj {
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Obj;
  throw FALLBACK;
}

function isRaw(m: Obj, typeName: string): boolean {
  const raw = m.$typeName === typeName;
  // toBinary writes a raw message's unknown fields; create drops an init object's.
  if (raw && m.$unknown !== undefined) throw FALLBACK;
  return raw;
}

function str(v: unknown, raw: boolean): string {
  if (typeof v === "string") return v;
  if (v == null && !raw) return "";
  throw FALLBACK;
}

function u32(v: unknown, raw: boolean): number {
  if (typeof v === "number" && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) return v;
  if (v == null && !raw) return 0;
  throw FALLBACK;
}

/** An enum value; only non-negative ones (a negative int32 takes ten bytes: it falls back). */
function enumValue(v: unknown, raw: boolean): number {
  if (typeof v === "number" && v >= 0 && v <= 0x7fffffff && Number.isInteger(v)) return v;
  if (v == null && !raw) return 0;
  throw FALLBACK;
}

function bool(v: unknown, raw: boolean): boolean {
  if (typeof v === "boolean") return v;
  if (v == null && !raw) return false;
  throw FALLBACK;
}

function bytes(v: unknown, raw: boolean): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v == null && !raw) return NO_BYTES;
  throw FALLBACK;
}

/**
 * An int64 value (a bigint, or a safe integer as protobuf-es also takes) as the uint64 of its
 * varint: a number below 2^53, else a bigint; negative ones are two's complement.
 */
function i64(v: unknown, raw: boolean): number | bigint {
  if (typeof v === "bigint") {
    if (v >= 0n && v <= MAX_SAFE) return Number(v);
    if (v >= I64_MIN && v <= I64_MAX) return BigInt.asUintN(64, v);
  } else if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return v >= 0 ? v : BigInt.asUintN(64, BigInt(v));
  } else if (v == null && !raw) return 0;
  throw FALLBACK;
}

function list(v: unknown, raw: boolean): readonly unknown[] {
  if (Array.isArray(v)) return v;
  if (v == null && !raw) return NO_ITEMS;
  throw FALLBACK;
}

/**
 * Writes a ChatResponse in two passes over the frame: `size*` validates every value (throwing
 * FALLBACK) and records, in write order, the UTF-8 length of each non-empty string; `write*` then
 * fills one buffer of exactly the total size.
 */
class ResponseEncoder {
  private lengths = new Int32Array(64);
  private count = 0;
  private next = 0;
  private buf: Buffer = NO_BUFFER;
  private at = 0;

  encode(frame: unknown): Uint8Array {
    try {
      const f = asObject(frame);
      const value = asObject(f.value);
      let field: number;
      let body: number;
      switch (f.case) {
        case "message":
          field = 1;
          body = this.sizeIncoming(value);
          break;
        case "sendAck":
          field = 2;
          body = this.sizeSendAck(value);
          break;
        case "receipt":
          field = 3;
          body = this.sizeReceipt(value);
          break;
        case "queueDrained":
          // No fields: only a created message's unknown fields would make it longer (they fall back).
          isRaw(value, T_QUEUE_DRAINED);
          field = 4;
          body = 0;
          break;
        default:
          throw FALLBACK;
      }
      const size = 1 + delimitedSize(body);
      this.buf = Buffer.allocUnsafe(size);
      this.byte(tag(field, WIRE_LEN));
      this.varint(body);
      if (field === 1) this.writeIncoming(value);
      else if (field === 2) this.writeSendAck(value);
      else if (field === 3) this.writeReceipt(value);
      // A size the two passes disagree on would be this encoder's bug: the frame still goes out,
      // written by protobuf-es (tests check that typical frames never take that path).
      if (this.at !== size) throw FALLBACK;
      return this.buf;
    } finally {
      this.count = 0;
      this.next = 0;
      this.at = 0;
      this.buf = NO_BUFFER;
    }
  }

  // -- pass 1: sizes ---------------------------------------------------------------------------

  private push(n: number): void {
    if (this.count === this.lengths.length) {
      const grown = new Int32Array(this.lengths.length * 2);
      grown.set(this.lengths);
      this.lengths = grown;
    }
    this.lengths[this.count++] = n;
  }

  /** A string field's size with its tag of `tagBytes` (0 when empty, so unset); records its length. */
  private sizeString(v: unknown, raw: boolean, tagBytes = 1): number {
    const s = str(v, raw);
    if (s.length === 0) return 0;
    const n = Buffer.byteLength(s, "utf8");
    this.push(n);
    return tagBytes + delimitedSize(n);
  }

  /** A repeated string field's size: every item is written, empty ones too. */
  private sizeStrings(v: unknown, raw: boolean): number {
    let size = 0;
    for (const s of list(v, raw)) {
      if (typeof s !== "string") throw FALLBACK;
      const n = s.length === 0 ? 0 : Buffer.byteLength(s, "utf8");
      this.push(n);
      size += 1 + delimitedSize(n);
    }
    return size;
  }

  private sizeIncoming(m: Obj): number {
    const raw = isRaw(m, T_INCOMING);
    let size = this.sizeString(m.serverId, raw);
    size += this.sizeString(m.id, raw);
    size += this.sizeString(m.from, raw);
    size += this.sizeString(m.group, raw);
    const kind = enumValue(m.kind, raw);
    if (kind !== 0) size += 1 + varintSize(kind);
    const ciphertext = bytes(m.ciphertext, raw);
    if (ciphertext.byteLength > 0) size += 1 + delimitedSize(ciphertext.byteLength);
    const t = i64(m.t, raw);
    if (t !== 0) size += 1 + varint64Size(t);
    const serverT = i64(m.serverT, raw);
    if (serverT !== 0) size += 1 + varint64Size(serverT);
    if (bool(m.ephemeral, raw)) size += 2;
    if (bool(m.forwarded, raw)) size += 2;
    const reportTag = bytes(m.reportTag, raw);
    if (reportTag.byteLength > 0) size += 1 + delimitedSize(reportTag.byteLength);
    if (bool(m.urgent, raw)) size += 2;
    const registrationId = u32(m.senderRegistrationId, raw);
    if (registrationId !== 0) size += 1 + varintSize(registrationId);
    const sequence = i64(m.sequence, raw);
    if (sequence !== 0) size += 1 + varint64Size(sequence);
    size += this.sizeString(m.thirdPartyProvider, raw);
    // Fields 30 and 40 take two-byte tags.
    if (bool(m.messageRequest, raw)) size += 3;
    const frankingTag = bytes(m.serverFrankingTag, raw);
    if (frankingTag.byteLength > 0) size += 2 + delimitedSize(frankingTag.byteLength);
    return size;
  }

  private sizeSendAck(m: Obj): number {
    const raw = isRaw(m, T_SEND_ACK);
    let size = this.sizeString(m.id, raw);
    const status = enumValue(m.status, raw);
    if (status !== 0) size += 1 + varintSize(status);
    size += this.sizeString(m.serverId, raw);
    const serverT = i64(m.serverT, raw);
    if (serverT !== 0) size += 1 + varint64Size(serverT);
    size += this.sizeStrings(m.missing, raw);
    size += this.sizeStrings(m.extra, raw);
    size += this.sizeStrings(m.stale, raw);
    return size;
  }

  private sizeReceipt(m: Obj): number {
    const raw = isRaw(m, T_RECEIPT);
    let size = this.sizeString(m.serverId, raw);
    size += this.sizeString(m.id, raw);
    size += this.sizeString(m.from, raw);
    const t = i64(m.t, raw);
    if (t !== 0) size += 1 + varint64Size(t);
    return size;
  }

  // -- pass 2: bytes (values were checked in pass 1) -------------------------------------------

  private byte(b: number): void {
    this.buf[this.at++] = b;
  }

  private varint(v: number): void {
    const buf = this.buf;
    while (v > 0x7f) {
      buf[this.at++] = (v & 0x7f) | 0x80;
      v = v > 0xffffffff ? Math.floor(v / 128) : v >>> 7;
    }
    buf[this.at++] = v;
  }

  private varint64(v: number | bigint): void {
    if (typeof v === "number") return this.varint(v);
    const buf = this.buf;
    while (v > 0x7fn) {
      buf[this.at++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    buf[this.at++] = Number(v);
  }

  private utf8(s: string): void {
    const n = this.lengths[this.next++] as number;
    this.varint(n);
    if (n > 0) this.at += this.buf.write(s, this.at, n, "utf8");
  }

  private raw(b: Uint8Array): void {
    this.varint(b.byteLength);
    this.buf.set(b, this.at);
    this.at += b.byteLength;
  }

  private writeString(tagByte: number, v: unknown, raw: boolean): void {
    const s = str(v, raw);
    if (s.length === 0) return;
    this.byte(tagByte);
    this.utf8(s);
  }

  private writeStrings(tagByte: number, v: unknown, raw: boolean): void {
    for (const s of list(v, raw)) {
      this.byte(tagByte);
      this.utf8(s as string);
    }
  }

  private writeInt64(tagByte: number, v: unknown, raw: boolean): void {
    const n = i64(v, raw);
    if (n === 0) return;
    this.byte(tagByte);
    this.varint64(n);
  }

  private writeUint32(tagByte: number, v: number): void {
    if (v === 0) return;
    this.byte(tagByte);
    this.varint(v);
  }

  private writeBool(tagByte: number, v: unknown, raw: boolean): void {
    if (!bool(v, raw)) return;
    this.byte(tagByte);
    this.byte(1);
  }

  private writeBytes(tagByte: number, v: unknown, raw: boolean): void {
    const b = bytes(v, raw);
    if (b.byteLength === 0) return;
    this.byte(tagByte);
    this.raw(b);
  }

  private writeIncoming(m: Obj): void {
    const raw = m.$typeName === T_INCOMING;
    this.writeString(tag(1, WIRE_LEN), m.serverId, raw);
    this.writeString(tag(2, WIRE_LEN), m.id, raw);
    this.writeString(tag(3, WIRE_LEN), m.from, raw);
    this.writeString(tag(4, WIRE_LEN), m.group, raw);
    this.writeUint32(tag(5, WIRE_VARINT), enumValue(m.kind, raw));
    this.writeBytes(tag(6, WIRE_LEN), m.ciphertext, raw);
    this.writeInt64(tag(7, WIRE_VARINT), m.t, raw);
    this.writeInt64(tag(8, WIRE_VARINT), m.serverT, raw);
    this.writeBool(tag(9, WIRE_VARINT), m.ephemeral, raw);
    this.writeBool(tag(10, WIRE_VARINT), m.forwarded, raw);
    this.writeBytes(tag(11, WIRE_LEN), m.reportTag, raw);
    this.writeBool(tag(12, WIRE_VARINT), m.urgent, raw);
    this.writeUint32(tag(13, WIRE_VARINT), u32(m.senderRegistrationId, raw));
    this.writeInt64(tag(14, WIRE_VARINT), m.sequence, raw);
    this.writeString(tag(15, WIRE_LEN), m.thirdPartyProvider, raw);
    if (bool(m.messageRequest, raw)) {
      // Field 30, varint: tag 240 as a two-byte varint.
      this.byte(0xf0);
      this.byte(0x01);
      this.byte(1);
    }
    const frankingTag = bytes(m.serverFrankingTag, raw);
    if (frankingTag.byteLength > 0) {
      // Field 40, length-delimited: tag 322 as a two-byte varint.
      this.byte(0xc2);
      this.byte(0x02);
      this.raw(frankingTag);
    }
  }

  private writeSendAck(m: Obj): void {
    const raw = m.$typeName === T_SEND_ACK;
    this.writeString(tag(1, WIRE_LEN), m.id, raw);
    this.writeUint32(tag(2, WIRE_VARINT), enumValue(m.status, raw));
    this.writeString(tag(3, WIRE_LEN), m.serverId, raw);
    this.writeInt64(tag(4, WIRE_VARINT), m.serverT, raw);
    this.writeStrings(tag(5, WIRE_LEN), m.missing, raw);
    this.writeStrings(tag(6, WIRE_LEN), m.extra, raw);
    this.writeStrings(tag(7, WIRE_LEN), m.stale, raw);
  }

  private writeReceipt(m: Obj): void {
    const raw = m.$typeName === T_RECEIPT;
    this.writeString(tag(1, WIRE_LEN), m.serverId, raw);
    this.writeString(tag(2, WIRE_LEN), m.id, raw);
    this.writeString(tag(3, WIRE_LEN), m.from, raw);
    this.writeInt64(tag(4, WIRE_VARINT), m.t, raw);
  }
}

const encoder = new ResponseEncoder();

/**
 * Encodes a Chat stream response: the bytes of `toBinary(ChatResponseSchema,
 * create(ChatResponseSchema, { frame }))`, written directly for `message`, `sendAck`, `receipt`
 * and `queueDrained` frames, whether their values are created messages (as translate.ts makes
 * them) or init objects. `error` frames, unknown fields and values protobuf-es would treat
 * specially (wrong types, negative or fractional unsigned numbers, ...) are encoded by protobuf-es;
 * its errors are thrown as is.
 */
export function encodeChatResponse(frame: ChatResponseFrame): Uint8Array {
  try {
    return encoder.encode(frame);
  } catch (err) {
    if (err !== FALLBACK) throw err;
  }
  return toBinary(whatsapp.ChatResponseSchema, create(whatsapp.ChatResponseSchema, { frame }));
}
