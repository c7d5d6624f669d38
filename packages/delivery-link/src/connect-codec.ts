import { create, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WireReader } from "@switchboard/grpc";
import {
  readNestedOrFallback,
  readOrFallback,
  WIRE_FALLBACK as FALLBACK,
  WIRE_LEN,
  WIRE_VARINT,
  type ClientCodecs,
} from "@switchboard/grpc";
import type { MessageService } from "@switchboard/proto";
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  type Address,
  type ConnectRequest,
  type ConnectResponse,
  type ConnectResponseBatch,
  type Envelope,
  type ErrorStatus,
  type QueueEmpty,
  type SendMessageResponse,
  type SendResult,
  type Sent,
} from "@switchboard/proto";

// The client half of the Connect stream without protobuf-es reflection, the mirror of the delivery
// service's connect-decode.ts: requests carrying `send` and `ack` frames (alone or batched) are
// written straight to wire format, and responses carrying deliveries, send results and
// queue-empty frames (alone or batched) are read straight into message objects. Reflection was
// over a third of the load generator's busy time, plus much of its garbage. Anything else — another
// frame kind, an unknown field, a value protobuf-es would encode or decode differently — goes to
// protobuf-es, for that frame of a batch or for the whole message, so the results are always those
// of `toBinary(create(...))` and `fromBinary` (connect-codec.test.ts checks that on random input
// and fails when one of these messages gains a field).

type ConnectRequestInit = MessageInitShape<typeof ConnectRequestSchema>;
type Obj = Record<string, unknown>;

/**
 * The fields of every message this codec writes or reads, as it was written for them, including
 * those it leaves to protobuf-es (connect-codec.test.ts fails when a schema differs: a new field
 * would be dropped by the encoder, or missing from the decoder's objects). Update both together.
 */
export const CODEC_MESSAGE_FIELDS: Readonly<Record<string, readonly number[]>> = {
  // Encoded: send (3), ack (5) and batch (6) frames; the others fall back.
  "switchboard.delivery.v1.ConnectRequest": [1, 2, 3, 4, 5, 6],
  "switchboard.delivery.v1.ConnectRequestBatch": [1],
  "switchboard.delivery.v1.SendFrame": [1, 2],
  "switchboard.delivery.v1.SendMessageRequest": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  "switchboard.delivery.v1.OutgoingMessage": [1, 2, 3, 4],
  "switchboard.delivery.v1.AckFrame": [1, 2],
  "switchboard.common.v1.Address": [1, 2],
  // Decoded: delivery (1), queue_empty (2), send_result (3) and batch (6) frames; the others fall back.
  "switchboard.delivery.v1.ConnectResponse": [1, 2, 3, 4, 5, 6],
  "switchboard.delivery.v1.ConnectResponseBatch": [1],
  "switchboard.common.v1.Envelope": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 40],
  "switchboard.delivery.v1.QueueEmpty": [1],
  // send (2) and error (4) results; send_group (3) falls back.
  "switchboard.delivery.v1.SendResult": [1, 2, 3, 4],
  // sent (1); mismatched_devices, stale_devices and recipient_not_found fall back.
  "switchboard.delivery.v1.SendMessageResponse": [1, 2, 3, 4],
  "switchboard.delivery.v1.Sent": [1, 2, 3],
  "switchboard.delivery.v1.ErrorStatus": [1, 2, 3, 4],
};

// ---------------------------------------------------------------------------------------------
// Encoding

const T_REQUEST = "switchboard.delivery.v1.ConnectRequest";
const T_BATCH = "switchboard.delivery.v1.ConnectRequestBatch";
const T_SEND_FRAME = "switchboard.delivery.v1.SendFrame";
const T_SEND_REQUEST = "switchboard.delivery.v1.SendMessageRequest";
const T_OUTGOING = "switchboard.delivery.v1.OutgoingMessage";
const T_ACK = "switchboard.delivery.v1.AckFrame";
const T_ADDRESS = "switchboard.common.v1.Address";

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const NO_ITEMS: readonly unknown[] = [];
const NO_BYTES = new Uint8Array(0);
const NO_BUFFER = Buffer.alloc(0);

const tag = (field: number, wire: number) => (field << 3) | wire;

function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 5;
  for (v = Math.floor(v / 0x800000000); v > 0; v = Math.floor(v / 128)) n++;
  return n;
}

/** Size of a varint holding a value from {@link u64} or {@link i64}. */
function varint64Size(v: number | bigint): number {
  if (typeof v === "number") return varintSize(v);
  let n = 1;
  while (v > 0x7fn) {
    v >>= 7n;
    n++;
  }
  return n;
}

/** Size of a length-delimited field below number 16: tag, length and body. */
const delimitedSize = (bytes: number) => 1 + varintSize(bytes) + bytes;

// Field values as `toBinary(create(schema, init))` sees them. An object is "raw" when protobuf-es
// uses it as is: it is a message of its type (`create` returns those unchanged), or it sits in a
// raw parent (whose fields `create` never visits). In an init object undefined and null mean
// unset; in a raw one they would reach the binary writer, so they fall back like every value that
// is not of the field's exact type.

function asObject(v: unknown): Obj {
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Obj;
  throw FALLBACK;
}

function isRaw(m: Obj, parentRaw: boolean, typeName: string): boolean {
  const raw = parentRaw || m.$typeName === typeName;
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

/** A uint64 value: a number below 2^53, else a bigint (0 is always the number). */
function u64(v: unknown, raw: boolean): number | bigint {
  if (typeof v === "bigint") {
    if (v >= 0n && v <= MAX_SAFE) return Number(v);
    if (v > MAX_SAFE && v <= U64_MAX) return v;
  } else if (typeof v === "number") {
    if (v >= 0 && Number.isSafeInteger(v)) return v;
  } else if (v == null && !raw) return 0;
  throw FALLBACK;
}

/** An int64 value as the uint64 of its varint: negative ones are two's complement. */
function i64(v: unknown, raw: boolean): number | bigint {
  if (typeof v === "bigint") {
    if (v >= 0n && v <= MAX_SAFE) return Number(v);
    if (v >= I64_MIN && v <= I64_MAX) return BigInt.asUintN(64, v);
  } else if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return v >= 0 ? v : BigInt.asUintN(64, BigInt(v));
  } else if (v == null && !raw) return 0;
  throw FALLBACK;
}

/** A singular message field: undefined when unset. */
function message(v: unknown, raw: boolean): Obj | undefined {
  if (v === undefined || (v === null && !raw)) return undefined;
  return asObject(v);
}

function list(v: unknown, raw: boolean): readonly unknown[] {
  if (Array.isArray(v)) return v;
  if (v == null && !raw) return NO_ITEMS;
  throw FALLBACK;
}

/**
 * Writes a ConnectRequest in two passes over the same objects: `size*` validates every value
 * (throwing FALLBACK) and records, in write order, the size of each nested message and the UTF-8
 * length of each string; `write*` then fills one buffer of exactly the total size. A batch frame
 * that falls back is encoded by protobuf-es in the first pass and copied in the second.
 */
class RequestEncoder {
  private slots = new Int32Array(256);
  private count = 0;
  private next = 0;
  private fallbacks: Uint8Array[] = [];
  private buf: Buffer = NO_BUFFER;
  private at = 0;

  encode(init: unknown): Uint8Array {
    try {
      const size = this.sizeRequest(asObject(init), false);
      this.buf = Buffer.allocUnsafe(size);
      this.writeRequest(init as Obj, false, true);
      // A size the two passes disagree on would be this encoder's bug: the message still goes out,
      // written by protobuf-es (tests check that typical frames never take that path).
      if (this.at !== size) throw FALLBACK;
      return this.buf;
    } finally {
      this.reset();
    }
  }

  /** A SendMessageRequest on its own (the unary SendMessage call). */
  encodeSendRequest(init: unknown): Uint8Array {
    try {
      const size = this.sizeSendRequest(asObject(init), false);
      this.buf = Buffer.allocUnsafe(size);
      this.writeSendRequest(init as Obj, false, true);
      // A size the two passes disagree on would be this encoder's bug: the message still goes out,
      // written by protobuf-es (tests check that typical frames never take that path).
      if (this.at !== size) throw FALLBACK;
      return this.buf;
    } finally {
      this.reset();
    }
  }

  private reset(): void {
    this.count = 0;
    this.next = 0;
    this.at = 0;
    this.buf = NO_BUFFER;
    if (this.fallbacks.length > 0) this.fallbacks = [];
  }

  // -- pass 1: sizes ---------------------------------------------------------------------------

  private reserve(): number {
    if (this.count === this.slots.length) {
      const grown = new Int32Array(this.slots.length * 2);
      grown.set(this.slots);
      this.slots = grown;
    }
    return this.count++;
  }

  private push(v: number): void {
    // Reserve first: `this.slots[this.reserve()] = v` would read `this.slots` before reserve()
    // replaces a full array, and write the value into the discarded one.
    const i = this.reserve();
    this.slots[i] = v;
  }

  /** A string field's size (0 when empty, so unset), recording its UTF-8 length. */
  private sizeString(v: unknown, raw: boolean): number {
    const s = str(v, raw);
    if (s.length === 0) return 0;
    const n = Buffer.byteLength(s, "utf8");
    this.push(n);
    return delimitedSize(n);
  }

  /** A ConnectRequest body (in a batch, or top level); its slot holds the size. */
  private sizeRequest(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_REQUEST);
    const frame = asObject(m.frame);
    const value = asObject(frame.value);
    const slot = this.reserve();
    let size: number;
    switch (frame.case) {
      case "send":
        size = delimitedSize(this.sizeSendFrame(value, raw));
        break;
      case "ack":
        size = delimitedSize(this.sizeAck(value, raw));
        break;
      case "batch":
        size = delimitedSize(this.sizeBatch(value, raw));
        break;
      default:
        throw FALLBACK;
    }
    this.slots[slot] = size;
    return size;
  }

  private sizeBatch(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_BATCH);
    const slot = this.reserve();
    let size = 0;
    for (const item of list(m.frames, raw)) {
      // protobuf-es writes a null item as an empty frame, which no frame of its own would be:
      // asObject lets the enclosing message fall back instead.
      const frame = asObject(item);
      const mark = this.count;
      let n: number;
      try {
        n = this.sizeRequest(frame, raw);
      } catch (err) {
        if (err !== FALLBACK) throw err;
        this.count = mark;
        const fallback = raw
          ? toBinary(ConnectRequestSchema, frame as ConnectRequest)
          : toBinary(ConnectRequestSchema, create(ConnectRequestSchema, frame as ConnectRequestInit));
        this.fallbacks.push(fallback);
        this.push(-this.fallbacks.length);
        n = fallback.byteLength;
      }
      size += delimitedSize(n);
    }
    this.slots[slot] = size;
    return size;
  }

  private sizeSendFrame(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_SEND_FRAME);
    const slot = this.reserve();
    let size = 0;
    const correlationId = u64(m.correlationId, raw);
    if (correlationId !== 0) size += 1 + varint64Size(correlationId);
    const request = message(m.request, raw);
    if (request !== undefined) size += delimitedSize(this.sizeSendRequest(request, raw));
    this.slots[slot] = size;
    return size;
  }

  private sizeSendRequest(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_SEND_REQUEST);
    const slot = this.reserve();
    let size = 0;
    const sender = message(m.sender, raw);
    if (sender !== undefined) size += delimitedSize(this.sizeAddress(sender, raw));
    size += this.sizeString(m.destinationAccountId, raw);
    for (const item of list(m.messages, raw)) size += delimitedSize(this.sizeOutgoing(asObject(item), raw));
    size += this.sizeString(m.clientMessageId, raw);
    const timestamp = i64(m.clientTimestampMs, raw);
    if (timestamp !== 0) size += 1 + varint64Size(timestamp);
    if (bool(m.ephemeral, raw)) size += 2;
    if (bool(m.urgent, raw)) size += 2;
    if (bool(m.forwarded, raw)) size += 2;
    const reportTag = bytes(m.reportTag, raw);
    if (reportTag.byteLength > 0) size += delimitedSize(reportTag.byteLength);
    if (bool(m.noDeliveryReceipt, raw)) size += 2;
    this.slots[slot] = size;
    return size;
  }

  private sizeOutgoing(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_OUTGOING);
    const slot = this.reserve();
    let size = 0;
    const deviceId = u32(m.deviceId, raw);
    if (deviceId !== 0) size += 1 + varintSize(deviceId);
    const registrationId = u32(m.registrationId, raw);
    if (registrationId !== 0) size += 1 + varintSize(registrationId);
    const type = enumValue(m.type, raw);
    if (type !== 0) size += 1 + varintSize(type);
    const content = bytes(m.content, raw);
    if (content.byteLength > 0) size += delimitedSize(content.byteLength);
    this.slots[slot] = size;
    return size;
  }

  private sizeAck(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_ACK);
    const slot = this.reserve();
    let size = 0;
    const device = message(m.device, raw);
    if (device !== undefined) size += delimitedSize(this.sizeAddress(device, raw));
    for (const id of list(m.messageIds, raw)) {
      // Repeated strings are written even when empty.
      if (typeof id !== "string") throw FALLBACK;
      const n = id.length === 0 ? 0 : Buffer.byteLength(id, "utf8");
      this.push(n);
      size += delimitedSize(n);
    }
    this.slots[slot] = size;
    return size;
  }

  private sizeAddress(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_ADDRESS);
    const slot = this.reserve();
    let size = this.sizeString(m.accountId, raw);
    const deviceId = u32(m.deviceId, raw);
    if (deviceId !== 0) size += 1 + varintSize(deviceId);
    this.slots[slot] = size;
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

  /** The next recorded size: a nested message's length prefix. */
  private length(): void {
    this.varint(this.slots[this.next++] as number);
  }

  private raw(b: Uint8Array): void {
    this.varint(b.byteLength);
    this.buf.set(b, this.at);
    this.at += b.byteLength;
  }

  private utf8(s: string): void {
    const n = this.slots[this.next++] as number;
    this.varint(n);
    if (n > 0) this.at += this.buf.write(s, this.at, n, "utf8");
  }

  private writeString(tagByte: number, v: unknown, raw: boolean): void {
    const s = str(v, raw);
    if (s.length === 0) return;
    this.byte(tagByte);
    this.utf8(s);
  }

  private writeRequest(m: Obj, parentRaw: boolean, top: boolean): void {
    const raw = isRaw(m, parentRaw, T_REQUEST);
    if (top) this.next++;
    else this.length();
    const frame = m.frame as Obj;
    const value = frame.value as Obj;
    switch (frame.case) {
      case "send":
        this.byte(tag(3, WIRE_LEN));
        return this.writeSendFrame(value, raw);
      case "ack":
        this.byte(tag(5, WIRE_LEN));
        return this.writeAck(value, raw);
      default:
        this.byte(tag(6, WIRE_LEN));
        return this.writeBatch(value, raw);
    }
  }

  private writeBatch(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_BATCH);
    this.length();
    for (const item of list(m.frames, raw)) {
      this.byte(tag(1, WIRE_LEN));
      const slot = this.slots[this.next] as number;
      if (slot >= 0) this.writeRequest(item as Obj, raw, false);
      else {
        this.next++;
        this.raw(this.fallbacks[-slot - 1] as Uint8Array);
      }
    }
  }

  private writeSendFrame(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_SEND_FRAME);
    this.length();
    const correlationId = u64(m.correlationId, raw);
    if (correlationId !== 0) {
      this.byte(tag(1, WIRE_VARINT));
      this.varint64(correlationId);
    }
    const request = message(m.request, raw);
    if (request !== undefined) {
      this.byte(tag(2, WIRE_LEN));
      this.writeSendRequest(request, raw);
    }
  }

  private writeSendRequest(m: Obj, parentRaw: boolean, top = false): void {
    const raw = isRaw(m, parentRaw, T_SEND_REQUEST);
    if (top) this.next++;
    else this.length();
    const sender = message(m.sender, raw);
    if (sender !== undefined) {
      this.byte(tag(1, WIRE_LEN));
      this.writeAddress(sender, raw);
    }
    this.writeString(tag(2, WIRE_LEN), m.destinationAccountId, raw);
    for (const item of list(m.messages, raw)) {
      this.byte(tag(3, WIRE_LEN));
      this.writeOutgoing(item as Obj, raw);
    }
    this.writeString(tag(4, WIRE_LEN), m.clientMessageId, raw);
    const timestamp = i64(m.clientTimestampMs, raw);
    if (timestamp !== 0) {
      this.byte(tag(5, WIRE_VARINT));
      this.varint64(timestamp);
    }
    if (bool(m.ephemeral, raw)) {
      this.byte(tag(6, WIRE_VARINT));
      this.byte(1);
    }
    if (bool(m.urgent, raw)) {
      this.byte(tag(7, WIRE_VARINT));
      this.byte(1);
    }
    if (bool(m.forwarded, raw)) {
      this.byte(tag(8, WIRE_VARINT));
      this.byte(1);
    }
    const reportTag = bytes(m.reportTag, raw);
    if (reportTag.byteLength > 0) {
      this.byte(tag(9, WIRE_LEN));
      this.raw(reportTag);
    }
    if (bool(m.noDeliveryReceipt, raw)) {
      this.byte(tag(10, WIRE_VARINT));
      this.byte(1);
    }
  }

  private writeOutgoing(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_OUTGOING);
    this.length();
    const deviceId = u32(m.deviceId, raw);
    if (deviceId !== 0) {
      this.byte(tag(1, WIRE_VARINT));
      this.varint(deviceId);
    }
    const registrationId = u32(m.registrationId, raw);
    if (registrationId !== 0) {
      this.byte(tag(2, WIRE_VARINT));
      this.varint(registrationId);
    }
    const type = enumValue(m.type, raw);
    if (type !== 0) {
      this.byte(tag(3, WIRE_VARINT));
      this.varint(type);
    }
    const content = bytes(m.content, raw);
    if (content.byteLength > 0) {
      this.byte(tag(4, WIRE_LEN));
      this.raw(content);
    }
  }

  private writeAck(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_ACK);
    this.length();
    const device = message(m.device, raw);
    if (device !== undefined) {
      this.byte(tag(1, WIRE_LEN));
      this.writeAddress(device, raw);
    }
    for (const id of list(m.messageIds, raw)) {
      this.byte(tag(2, WIRE_LEN));
      this.utf8(id as string);
    }
  }

  private writeAddress(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_ADDRESS);
    this.length();
    this.writeString(tag(1, WIRE_LEN), m.accountId, raw);
    const deviceId = u32(m.deviceId, raw);
    if (deviceId !== 0) {
      this.byte(tag(2, WIRE_VARINT));
      this.varint(deviceId);
    }
  }
}

const encoder = new RequestEncoder();

/**
 * Encodes a Connect stream request: the bytes of `toBinary(ConnectRequestSchema,
 * create(ConnectRequestSchema, init))`, written directly for `send` and `ack` frames and batches
 * of them. Other frames (subscribe, unsubscribe, sendGroup), unknown fields and values protobuf-es
 * would treat specially (wrong types, negative or fractional unsigned numbers, ...) are encoded by
 * protobuf-es: that frame of a batch, or else the whole message; its errors are thrown as is.
 */
export function encodeConnectRequest(init: ConnectRequestInit): Uint8Array {
  try {
    return encoder.encode(init);
  } catch (err) {
    if (err !== FALLBACK) throw err;
  }
  return toBinary(ConnectRequestSchema, create(ConnectRequestSchema, init));
}

/**
 * Encodes a unary SendMessage request: the bytes of `toBinary(SendMessageRequestSchema,
 * create(SendMessageRequestSchema, init))`, written directly like a `send` frame's request, with
 * the same fallback to protobuf-es for anything unusual.
 */
export function encodeSendMessageRequest(
  init: MessageInitShape<typeof SendMessageRequestSchema>,
): Uint8Array {
  try {
    return encoder.encodeSendRequest(init);
  } catch (err) {
    if (err !== FALLBACK) throw err;
  }
  return toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, init));
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes a Connect stream response; returns exactly what `fromBinary(ConnectResponseSchema,
 * bytes)` returns and throws where it throws. `delivery`, `sendResult` (a `send` with `sent`, or
 * an `error`) and `queueEmpty` frames, alone or batched, are read directly; anything else (other
 * frames and results, unknown fields, repeated singular messages, invalid UTF-8, negative or
 * large 64-bit values) is decoded by protobuf-es: that frame of a batch, or else the whole message.
 */
export function decodeConnectResponse(bytes: Uint8Array): ConnectResponse {
  return readOrFallback(ConnectResponseSchema, bytes, (r, end) => readResponse(r, end, true));
}

/**
 * Decodes a unary SendMessage response: exactly what `fromBinary(SendMessageResponseSchema, bytes)`
 * returns. `sent` is read directly; the other outcomes, and anything unusual, by protobuf-es.
 */
export function decodeSendMessageResponse(bytes: Uint8Array): SendMessageResponse {
  return readOrFallback(SendMessageResponseSchema, bytes, readSendResponse);
}

function readResponse(r: WireReader, end: number, top: boolean): ConnectResponse {
  const start = r.pos;
  let frame: ConnectResponse["frame"] = { case: undefined };
  try {
    while (r.pos < end) {
      const t = r.tag(end);
      if ((t & 7) !== WIRE_LEN || frame.case !== undefined) throw FALLBACK;
      const stop = r.delimited(end);
      switch (t >>> 3) {
        case 1:
          frame = { case: "delivery", value: readEnvelope(r, stop) };
          break;
        case 2:
          frame = { case: "queueEmpty", value: readQueueEmpty(r, stop) };
          break;
        case 3:
          frame = { case: "sendResult", value: readSendResult(r, stop) };
          break;
        case 6:
          if (!top) throw FALLBACK;
          frame = { case: "batch", value: readBatch(r, stop) };
          break;
        default:
          throw FALLBACK;
      }
    }
  } catch (err) {
    // A frame inside a batch falls back on its own; the top-level message as a whole.
    if (err !== FALLBACK || top) throw err;
    // Two levels (ConnectResponse, ConnectResponseBatch) above the frame.
    return readNestedOrFallback(ConnectResponseSchema, r, start, end, 2);
  }
  return { $typeName: "switchboard.delivery.v1.ConnectResponse", frame };
}

function readBatch(r: WireReader, end: number): ConnectResponseBatch {
  const frames: ConnectResponse[] = [];
  while (r.pos < end) {
    if (r.tag(end) !== tag(1, WIRE_LEN)) throw FALLBACK;
    const stop = r.delimited(end);
    frames.push(readResponse(r, stop, false));
  }
  return { $typeName: "switchboard.delivery.v1.ConnectResponseBatch", frames };
}

function readEnvelope(r: WireReader, end: number): Envelope {
  // Keys in protobuf-es's order (declaration order; message fields when read), for the same shape.
  const m: Envelope = {
    $typeName: "switchboard.common.v1.Envelope",
    id: "",
    clientMessageId: "",
    type: 0,
    sourceApp: 0,
    sourceProviderId: "",
    sourceRegistrationId: 0,
    destinationApp: 0,
    content: new Uint8Array(0),
    serverTimestampMs: 0n,
    clientTimestampMs: 0n,
    ephemeral: false,
    urgent: false,
    groupId: "",
    forwarded: false,
    reportTag: new Uint8Array(0),
    sequence: 0n,
    serverFrankingTag: new Uint8Array(0),
    messageRequest: false,
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.id = r.string(end);
        break;
      case tag(2, WIRE_LEN):
        m.clientMessageId = r.string(end);
        break;
      case tag(3, WIRE_VARINT):
        m.type = r.int32(end);
        break;
      case tag(4, WIRE_LEN):
        if (m.source !== undefined) throw FALLBACK;
        m.source = readAddress(r, r.delimited(end));
        break;
      case tag(5, WIRE_VARINT):
        m.sourceApp = r.int32(end);
        break;
      case tag(6, WIRE_LEN):
        m.sourceProviderId = r.string(end);
        break;
      case tag(7, WIRE_VARINT):
        m.sourceRegistrationId = r.uint32(end);
        break;
      case tag(8, WIRE_LEN):
        if (m.destination !== undefined) throw FALLBACK;
        m.destination = readAddress(r, r.delimited(end));
        break;
      case tag(9, WIRE_VARINT):
        m.destinationApp = r.int32(end);
        break;
      case tag(10, WIRE_LEN):
        m.content = r.bytes(end);
        break;
      case tag(11, WIRE_VARINT):
        m.serverTimestampMs = r.int64(end);
        break;
      case tag(12, WIRE_VARINT):
        m.clientTimestampMs = r.int64(end);
        break;
      case tag(13, WIRE_VARINT):
        m.ephemeral = r.bool(end);
        break;
      case tag(14, WIRE_VARINT):
        m.urgent = r.bool(end);
        break;
      case tag(15, WIRE_LEN):
        m.groupId = r.string(end);
        break;
      case tag(16, WIRE_VARINT):
        m.forwarded = r.bool(end);
        break;
      case tag(17, WIRE_LEN):
        m.reportTag = r.bytes(end);
        break;
      case tag(18, WIRE_VARINT):
        m.sequence = r.int64(end);
        break;
      case tag(19, WIRE_LEN):
        m.serverFrankingTag = r.bytes(end);
        break;
      case tag(40, WIRE_VARINT):
        m.messageRequest = r.bool(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readQueueEmpty(r: WireReader, end: number): QueueEmpty {
  const m: QueueEmpty = { $typeName: "switchboard.delivery.v1.QueueEmpty" };
  while (r.pos < end) {
    if (r.tag(end) !== tag(1, WIRE_LEN) || m.device !== undefined) throw FALLBACK;
    m.device = readAddress(r, r.delimited(end));
  }
  return m;
}

function readSendResult(r: WireReader, end: number): SendResult {
  const m: SendResult = {
    $typeName: "switchboard.delivery.v1.SendResult",
    correlationId: 0n,
    result: { case: undefined },
  };
  while (r.pos < end) {
    const t = r.tag(end);
    if (t === tag(1, WIRE_VARINT)) {
      m.correlationId = r.int64(end);
      continue;
    }
    // A oneof set twice replaces or merges: leave that to protobuf-es.
    if (m.result.case !== undefined) throw FALLBACK;
    if (t === tag(2, WIRE_LEN)) m.result = { case: "send", value: readSendResponse(r, r.delimited(end)) };
    else if (t === tag(4, WIRE_LEN))
      m.result = { case: "error", value: readErrorStatus(r, r.delimited(end)) };
    else throw FALLBACK;
  }
  return m;
}

function readSendResponse(r: WireReader, end: number): SendMessageResponse {
  const m: SendMessageResponse = {
    $typeName: "switchboard.delivery.v1.SendMessageResponse",
    result: { case: undefined },
  };
  while (r.pos < end) {
    if (r.tag(end) !== tag(1, WIRE_LEN) || m.result.case !== undefined) throw FALLBACK;
    m.result = { case: "sent", value: readSent(r, r.delimited(end)) };
  }
  return m;
}

function readSent(r: WireReader, end: number): Sent {
  const m: Sent = {
    $typeName: "switchboard.delivery.v1.Sent",
    messageId: "",
    serverTimestampMs: 0n,
    duplicate: false,
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.messageId = r.string(end);
        break;
      case tag(2, WIRE_VARINT):
        m.serverTimestampMs = r.int64(end);
        break;
      case tag(3, WIRE_VARINT):
        m.duplicate = r.bool(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readErrorStatus(r: WireReader, end: number): ErrorStatus {
  const m: ErrorStatus = {
    $typeName: "switchboard.delivery.v1.ErrorStatus",
    code: 0,
    reason: "",
    message: "",
    retryAfterMs: 0,
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_VARINT):
        m.code = r.int32(end);
        break;
      case tag(2, WIRE_LEN):
        m.reason = r.string(end);
        break;
      case tag(3, WIRE_LEN):
        m.message = r.string(end);
        break;
      case tag(4, WIRE_VARINT):
        m.retryAfterMs = r.uint32(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readAddress(r: WireReader, end: number): Address {
  const m: Address = { $typeName: "switchboard.common.v1.Address", accountId: "", deviceId: 0 };
  while (r.pos < end) {
    const t = r.tag(end);
    if (t === tag(1, WIRE_LEN)) m.accountId = r.string(end);
    else if (t === tag(2, WIRE_VARINT)) m.deviceId = r.uint32(end);
    else throw FALLBACK;
  }
  return m;
}

/**
 * The hand-written codecs of MessageService's hot methods, for `createClient(MessageService, …,
 * { codecs: messageServiceCodecs })`: the Connect stream and unary SendMessage.
 */
export const messageServiceCodecs: ClientCodecs<typeof MessageService> = {
  connect: { encode: encodeConnectRequest, decode: decodeConnectResponse },
  sendMessage: { encode: encodeSendMessageRequest, decode: decodeSendMessageResponse },
};
