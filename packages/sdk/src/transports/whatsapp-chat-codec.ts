// The client half of the WhatsApp-style Chat stream without protobuf-es reflection, after the
// delivery link's connect-codec.ts: `send` (OutgoingChat) and `ack` (ChatAck) requests are written
// straight to wire format, and `message`, `sendAck`, `receipt` and `queueDrained` responses are
// read straight into message objects. The load generator runs one stream per WhatsApp-style device,
// and protobuf-es was ~9.6 % of its CPU samples (~14 % of busy time): toBinary took 10 µs for a
// send with one participant and 256 bytes of ciphertext and 1.4 µs for an ack, fromBinary 3.7 µs
// for an IncomingChat and 1.5 µs for a SendAck, against 0.2–1 µs written by hand; the load
// generator's CPU per WhatsApp-style send fell by about a fifth (docs/benchmarks.md, thirteenth
// round). Anything else (an `error` frame, an unknown field, a value protobuf-es would encode or
// decode differently) goes to protobuf-es, so the results always equal those of
// `toBinary(create(...))` and `fromBinary` (whatsapp-chat-codec.test.ts checks that on random input
// and fails when one of these messages gains a field).
import { create, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  readOrFallback,
  WIRE_FALLBACK as FALLBACK,
  WIRE_LEN,
  WIRE_VARINT,
  type ClientCodecs,
  type WireReader,
} from "@switchboard/grpc";
import { whatsapp } from "@switchboard/proto";

type ChatRequestInit = MessageInitShape<typeof whatsapp.ChatRequestSchema>;
type Obj = Record<string, unknown>;

/**
 * The fields of every message this codec writes or reads, as it was written for them, including
 * those it leaves to protobuf-es (whatsapp-chat-codec.test.ts fails when a schema differs: a new
 * field would be dropped by the encoder, or missing from the decoder's objects). Update both
 * together.
 */
export const CHAT_CODEC_MESSAGE_FIELDS: Readonly<Record<string, readonly number[]>> = {
  // Encoded: both frames, send (1) and ack (2).
  "switchboard.gateway.whatsapp.v1.ChatRequest": [1, 2],
  "switchboard.gateway.whatsapp.v1.OutgoingChat": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  "switchboard.gateway.whatsapp.v1.DeviceCiphertext": [1, 2, 3, 4],
  "switchboard.gateway.whatsapp.v1.ChatAck": [1],
  // Decoded: message (1), send_ack (2), receipt (3) and queue_drained (4); error (5) falls back.
  "switchboard.gateway.whatsapp.v1.ChatResponse": [1, 2, 3, 4, 5],
  "switchboard.gateway.whatsapp.v1.IncomingChat": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30, 40],
  "switchboard.gateway.whatsapp.v1.SendAck": [1, 2, 3, 4, 5, 6, 7],
  "switchboard.gateway.whatsapp.v1.ServerReceipt": [1, 2, 3, 4],
  "switchboard.gateway.whatsapp.v1.QueueDrained": [],
};

// ---------------------------------------------------------------------------------------------
// Encoding

const T_REQUEST = "switchboard.gateway.whatsapp.v1.ChatRequest";
const T_OUTGOING = "switchboard.gateway.whatsapp.v1.OutgoingChat";
const T_DEVICE_CIPHERTEXT = "switchboard.gateway.whatsapp.v1.DeviceCiphertext";
const T_ACK = "switchboard.gateway.whatsapp.v1.ChatAck";

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
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

/** Size of a length-delimited field below number 16: tag, length and body. */
const delimitedSize = (bytes: number) => 1 + varintSize(bytes) + bytes;

// Field values as `toBinary(create(schema, init))` sees them. An object is "raw" when protobuf-es
// uses it as is: it is a message of its type (`create` returns those unchanged, as the transport's
// created OutgoingChat), or it sits in a raw parent (whose fields `create` never visits). In an
// init object undefined and null mean unset; in a raw one they would reach the binary writer, so
// they fall back like every value that is not of the field's exact type.

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

/** An int64 value as the uint64 of its varint: a number below 2^53, else a bigint (negative ones are two's complement). */
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
 * Writes a ChatRequest in two passes over the same objects: `size*` validates every value
 * (throwing FALLBACK) and records, in write order, the size of each nested message and the UTF-8
 * length of each string; `write*` then fills one buffer of exactly the total size.
 */
class ChatRequestEncoder {
  private slots = new Int32Array(64);
  private count = 0;
  private next = 0;
  private buf: Buffer = NO_BUFFER;
  private at = 0;

  encode(init: unknown): Uint8Array {
    try {
      const m = asObject(init);
      const raw = isRaw(m, false, T_REQUEST);
      const frame = asObject(m.frame);
      const value = asObject(frame.value);
      const send = frame.case === "send";
      if (!send && frame.case !== "ack") throw FALLBACK;
      const size = delimitedSize(send ? this.sizeOutgoing(value, raw) : this.sizeAck(value, raw));
      this.buf = Buffer.allocUnsafe(size);
      if (send) {
        this.byte(tag(1, WIRE_LEN));
        this.writeOutgoing(value, raw);
      } else {
        this.byte(tag(2, WIRE_LEN));
        this.writeAck(value, raw);
      }
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

  private sizeOutgoing(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_OUTGOING);
    const slot = this.reserve();
    let size = this.sizeString(m.id, raw);
    size += this.sizeString(m.to, raw);
    for (const item of list(m.participants, raw)) {
      size += delimitedSize(this.sizeDeviceCiphertext(asObject(item), raw));
    }
    const groupCiphertext = bytes(m.groupCiphertext, raw);
    if (groupCiphertext.byteLength > 0) size += delimitedSize(groupCiphertext.byteLength);
    const t = i64(m.t, raw);
    if (t !== 0) size += 1 + varint64Size(t);
    if (bool(m.ephemeral, raw)) size += 2;
    if (bool(m.forwarded, raw)) size += 2;
    const reportTag = bytes(m.reportTag, raw);
    if (reportTag.byteLength > 0) size += delimitedSize(reportTag.byteLength);
    if (bool(m.urgent, raw)) size += 2;
    if (bool(m.noServerReceipt, raw)) size += 2;
    this.slots[slot] = size;
    return size;
  }

  private sizeDeviceCiphertext(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_DEVICE_CIPHERTEXT);
    const slot = this.reserve();
    let size = this.sizeString(m.jid, raw);
    const registrationId = u32(m.registrationId, raw);
    if (registrationId !== 0) size += 1 + varintSize(registrationId);
    const kind = enumValue(m.kind, raw);
    if (kind !== 0) size += 1 + varintSize(kind);
    const ciphertext = bytes(m.ciphertext, raw);
    if (ciphertext.byteLength > 0) size += delimitedSize(ciphertext.byteLength);
    this.slots[slot] = size;
    return size;
  }

  private sizeAck(m: Obj, parentRaw: boolean): number {
    const raw = isRaw(m, parentRaw, T_ACK);
    const slot = this.reserve();
    let size = 0;
    for (const id of list(m.ids, raw)) {
      // Repeated strings are written even when empty.
      if (typeof id !== "string") throw FALLBACK;
      const n = id.length === 0 ? 0 : Buffer.byteLength(id, "utf8");
      this.push(n);
      size += delimitedSize(n);
    }
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

  private writeOutgoing(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_OUTGOING);
    this.length();
    this.writeString(tag(1, WIRE_LEN), m.id, raw);
    this.writeString(tag(2, WIRE_LEN), m.to, raw);
    for (const item of list(m.participants, raw)) {
      this.byte(tag(3, WIRE_LEN));
      this.writeDeviceCiphertext(item as Obj, raw);
    }
    const groupCiphertext = bytes(m.groupCiphertext, raw);
    if (groupCiphertext.byteLength > 0) {
      this.byte(tag(4, WIRE_LEN));
      this.raw(groupCiphertext);
    }
    const t = i64(m.t, raw);
    if (t !== 0) {
      this.byte(tag(5, WIRE_VARINT));
      this.varint64(t);
    }
    if (bool(m.ephemeral, raw)) {
      this.byte(tag(6, WIRE_VARINT));
      this.byte(1);
    }
    if (bool(m.forwarded, raw)) {
      this.byte(tag(7, WIRE_VARINT));
      this.byte(1);
    }
    const reportTag = bytes(m.reportTag, raw);
    if (reportTag.byteLength > 0) {
      this.byte(tag(8, WIRE_LEN));
      this.raw(reportTag);
    }
    if (bool(m.urgent, raw)) {
      this.byte(tag(9, WIRE_VARINT));
      this.byte(1);
    }
    if (bool(m.noServerReceipt, raw)) {
      this.byte(tag(10, WIRE_VARINT));
      this.byte(1);
    }
  }

  private writeDeviceCiphertext(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_DEVICE_CIPHERTEXT);
    this.length();
    this.writeString(tag(1, WIRE_LEN), m.jid, raw);
    const registrationId = u32(m.registrationId, raw);
    if (registrationId !== 0) {
      this.byte(tag(2, WIRE_VARINT));
      this.varint(registrationId);
    }
    const kind = enumValue(m.kind, raw);
    if (kind !== 0) {
      this.byte(tag(3, WIRE_VARINT));
      this.varint(kind);
    }
    const ciphertext = bytes(m.ciphertext, raw);
    if (ciphertext.byteLength > 0) {
      this.byte(tag(4, WIRE_LEN));
      this.raw(ciphertext);
    }
  }

  private writeAck(m: Obj, parentRaw: boolean): void {
    const raw = isRaw(m, parentRaw, T_ACK);
    this.length();
    for (const id of list(m.ids, raw)) {
      this.byte(tag(1, WIRE_LEN));
      this.utf8(id as string);
    }
  }
}

const encoder = new ChatRequestEncoder();

/**
 * Encodes a Chat stream request: the bytes of `toBinary(ChatRequestSchema,
 * create(ChatRequestSchema, init))`, written directly for `send` and `ack` frames, from init
 * objects and created messages alike. Unknown fields and values protobuf-es would treat specially
 * (wrong types, negative or fractional unsigned numbers, ...) are encoded by protobuf-es; its
 * errors are thrown as is.
 */
export function encodeChatRequest(init: ChatRequestInit): Uint8Array {
  try {
    return encoder.encode(init);
  } catch (err) {
    if (err !== FALLBACK) throw err;
  }
  return toBinary(whatsapp.ChatRequestSchema, create(whatsapp.ChatRequestSchema, init));
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes a Chat stream response; returns exactly what `fromBinary(ChatResponseSchema, bytes)`
 * returns and throws where it throws. `message`, `sendAck`, `receipt` and `queueDrained` frames
 * are read directly; anything else (`error` frames, unknown fields, a frame set twice, invalid
 * UTF-8, negative or large 64-bit values) is decoded by protobuf-es.
 */
export function decodeChatResponse(bytes: Uint8Array): whatsapp.ChatResponse {
  return readOrFallback(whatsapp.ChatResponseSchema, bytes, readResponse);
}

function readResponse(r: WireReader, end: number): whatsapp.ChatResponse {
  let frame: whatsapp.ChatResponse["frame"] = { case: undefined };
  while (r.pos < end) {
    const t = r.tag(end);
    // A oneof set twice replaces or merges: leave that to protobuf-es.
    if ((t & 7) !== WIRE_LEN || frame.case !== undefined) throw FALLBACK;
    const stop = r.delimited(end);
    switch (t >>> 3) {
      case 1:
        frame = { case: "message", value: readIncomingChat(r, stop) };
        break;
      case 2:
        frame = { case: "sendAck", value: readSendAck(r, stop) };
        break;
      case 3:
        frame = { case: "receipt", value: readServerReceipt(r, stop) };
        break;
      case 4:
        // QueueDrained has no fields: anything in it is unknown to this decoder.
        if (stop !== r.pos) throw FALLBACK;
        frame = {
          case: "queueDrained",
          value: { $typeName: "switchboard.gateway.whatsapp.v1.QueueDrained" },
        };
        break;
      default:
        throw FALLBACK;
    }
  }
  return { $typeName: "switchboard.gateway.whatsapp.v1.ChatResponse", frame };
}

function readIncomingChat(r: WireReader, end: number): whatsapp.IncomingChat {
  // Keys in protobuf-es's order (declaration order), for the same shape.
  const m: whatsapp.IncomingChat = {
    $typeName: "switchboard.gateway.whatsapp.v1.IncomingChat",
    serverId: "",
    id: "",
    from: "",
    group: "",
    kind: 0,
    ciphertext: new Uint8Array(0),
    t: 0n,
    serverT: 0n,
    ephemeral: false,
    forwarded: false,
    reportTag: new Uint8Array(0),
    urgent: false,
    senderRegistrationId: 0,
    sequence: 0n,
    thirdPartyProvider: "",
    messageRequest: false,
    serverFrankingTag: new Uint8Array(0),
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.serverId = r.string(end);
        break;
      case tag(2, WIRE_LEN):
        m.id = r.string(end);
        break;
      case tag(3, WIRE_LEN):
        m.from = r.string(end);
        break;
      case tag(4, WIRE_LEN):
        m.group = r.string(end);
        break;
      case tag(5, WIRE_VARINT):
        m.kind = r.int32(end);
        break;
      case tag(6, WIRE_LEN):
        m.ciphertext = r.bytes(end);
        break;
      case tag(7, WIRE_VARINT):
        m.t = r.int64(end);
        break;
      case tag(8, WIRE_VARINT):
        m.serverT = r.int64(end);
        break;
      case tag(9, WIRE_VARINT):
        m.ephemeral = r.bool(end);
        break;
      case tag(10, WIRE_VARINT):
        m.forwarded = r.bool(end);
        break;
      case tag(11, WIRE_LEN):
        m.reportTag = r.bytes(end);
        break;
      case tag(12, WIRE_VARINT):
        m.urgent = r.bool(end);
        break;
      case tag(13, WIRE_VARINT):
        m.senderRegistrationId = r.uint32(end);
        break;
      case tag(14, WIRE_VARINT):
        m.sequence = r.int64(end);
        break;
      case tag(15, WIRE_LEN):
        m.thirdPartyProvider = r.string(end);
        break;
      case tag(30, WIRE_VARINT):
        m.messageRequest = r.bool(end);
        break;
      case tag(40, WIRE_LEN):
        m.serverFrankingTag = r.bytes(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readSendAck(r: WireReader, end: number): whatsapp.SendAck {
  const m: whatsapp.SendAck = {
    $typeName: "switchboard.gateway.whatsapp.v1.SendAck",
    id: "",
    status: 0,
    serverId: "",
    serverT: 0n,
    missing: [],
    extra: [],
    stale: [],
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.id = r.string(end);
        break;
      case tag(2, WIRE_VARINT):
        m.status = r.int32(end);
        break;
      case tag(3, WIRE_LEN):
        m.serverId = r.string(end);
        break;
      case tag(4, WIRE_VARINT):
        m.serverT = r.int64(end);
        break;
      case tag(5, WIRE_LEN):
        m.missing.push(r.string(end));
        break;
      case tag(6, WIRE_LEN):
        m.extra.push(r.string(end));
        break;
      case tag(7, WIRE_LEN):
        m.stale.push(r.string(end));
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readServerReceipt(r: WireReader, end: number): whatsapp.ServerReceipt {
  const m: whatsapp.ServerReceipt = {
    $typeName: "switchboard.gateway.whatsapp.v1.ServerReceipt",
    serverId: "",
    id: "",
    from: "",
    t: 0n,
  };
  while (r.pos < end) {
    switch (r.tag(end)) {
      case tag(1, WIRE_LEN):
        m.serverId = r.string(end);
        break;
      case tag(2, WIRE_LEN):
        m.id = r.string(end);
        break;
      case tag(3, WIRE_LEN):
        m.from = r.string(end);
        break;
      case tag(4, WIRE_VARINT):
        m.t = r.int64(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

/**
 * The hand-written codecs of WhatsAppService's hot method, for `createClient(WhatsAppService, …,
 * { codecs: whatsAppChatCodecs })`: the Chat stream's requests and responses.
 */
export const whatsAppChatCodecs: ClientCodecs<typeof whatsapp.WhatsAppService> = {
  chat: { encode: encodeChatRequest, decode: decodeChatResponse },
};
