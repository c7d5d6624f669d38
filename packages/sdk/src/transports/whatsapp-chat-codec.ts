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
  boolValue,
  bytesValue,
  delimitedSize,
  enumValue,
  int64Value,
  isRawMessage,
  listValue,
  objectValue,
  readOrFallback,
  uint32Value,
  varint64Size,
  varintSize,
  WIRE_FALLBACK as FALLBACK,
  WIRE_LEN,
  WIRE_VARINT,
  wireTag as tag,
  WireWriter,
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

/**
 * Writes a ChatRequest in two passes over the same objects (see @switchboard/grpc's WireWriter):
 * `size*` checks every value and records sizes, `write*` fills one buffer of exactly the total
 * size.
 */
class ChatRequestEncoder {
  private readonly w = new WireWriter(64);

  encode(init: unknown): Uint8Array {
    const w = this.w;
    try {
      const m = objectValue(init);
      const raw = isRawMessage(false, m.$typeName === T_REQUEST, m.$unknown);
      const frame = objectValue(m.frame);
      const value = objectValue(frame.value);
      const send = frame.case === "send";
      if (!send && frame.case !== "ack") throw FALLBACK;
      w.start(delimitedSize(send ? this.sizeOutgoing(value, raw) : this.sizeAck(value, raw)));
      if (send) {
        w.byte(tag(1, WIRE_LEN));
        this.writeOutgoing(value, raw);
      } else {
        w.byte(tag(2, WIRE_LEN));
        this.writeAck(value, raw);
      }
      return w.finish();
    } finally {
      w.reset();
    }
  }

  // -- pass 1: sizes ---------------------------------------------------------------------------

  private sizeOutgoing(m: Obj, parentRaw: boolean): number {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_OUTGOING, m.$unknown);
    const entry = w.reserve();
    let size = w.sizeString(m.id, raw);
    size += w.sizeString(m.to, raw);
    for (const item of listValue(m.participants, raw)) {
      size += delimitedSize(this.sizeDeviceCiphertext(objectValue(item), raw));
    }
    const groupCiphertext = bytesValue(m.groupCiphertext, raw);
    if (groupCiphertext.byteLength > 0) size += delimitedSize(groupCiphertext.byteLength);
    const t = int64Value(m.t, raw);
    if (t !== 0) size += 1 + varint64Size(t);
    if (boolValue(m.ephemeral, raw)) size += 2;
    if (boolValue(m.forwarded, raw)) size += 2;
    const reportTag = bytesValue(m.reportTag, raw);
    if (reportTag.byteLength > 0) size += delimitedSize(reportTag.byteLength);
    if (boolValue(m.urgent, raw)) size += 2;
    if (boolValue(m.noServerReceipt, raw)) size += 2;
    w.set(entry, size);
    return size;
  }

  private sizeDeviceCiphertext(m: Obj, parentRaw: boolean): number {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_DEVICE_CIPHERTEXT, m.$unknown);
    const entry = w.reserve();
    let size = w.sizeString(m.jid, raw);
    const registrationId = uint32Value(m.registrationId, raw);
    if (registrationId !== 0) size += 1 + varintSize(registrationId);
    const kind = enumValue(m.kind, raw);
    if (kind !== 0) size += 1 + varintSize(kind);
    const ciphertext = bytesValue(m.ciphertext, raw);
    if (ciphertext.byteLength > 0) size += delimitedSize(ciphertext.byteLength);
    w.set(entry, size);
    return size;
  }

  private sizeAck(m: Obj, parentRaw: boolean): number {
    const raw = isRawMessage(parentRaw, m.$typeName === T_ACK, m.$unknown);
    const entry = this.w.reserve();
    const size = this.w.sizeStrings(m.ids, raw);
    this.w.set(entry, size);
    return size;
  }

  // -- pass 2: bytes (values were checked in pass 1) -------------------------------------------

  private writeOutgoing(m: Obj, parentRaw: boolean): void {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_OUTGOING, m.$unknown);
    w.length();
    w.writeString(tag(1, WIRE_LEN), m.id, raw);
    w.writeString(tag(2, WIRE_LEN), m.to, raw);
    for (const item of listValue(m.participants, raw)) {
      w.byte(tag(3, WIRE_LEN));
      this.writeDeviceCiphertext(item as Obj, raw);
    }
    w.writeBytes(tag(4, WIRE_LEN), m.groupCiphertext, raw);
    w.writeVarint64(tag(5, WIRE_VARINT), int64Value(m.t, raw));
    w.writeBool(tag(6, WIRE_VARINT), m.ephemeral, raw);
    w.writeBool(tag(7, WIRE_VARINT), m.forwarded, raw);
    w.writeBytes(tag(8, WIRE_LEN), m.reportTag, raw);
    w.writeBool(tag(9, WIRE_VARINT), m.urgent, raw);
    w.writeBool(tag(10, WIRE_VARINT), m.noServerReceipt, raw);
  }

  private writeDeviceCiphertext(m: Obj, parentRaw: boolean): void {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_DEVICE_CIPHERTEXT, m.$unknown);
    w.length();
    w.writeString(tag(1, WIRE_LEN), m.jid, raw);
    w.writeVarint(tag(2, WIRE_VARINT), uint32Value(m.registrationId, raw));
    w.writeVarint(tag(3, WIRE_VARINT), enumValue(m.kind, raw));
    w.writeBytes(tag(4, WIRE_LEN), m.ciphertext, raw);
  }

  private writeAck(m: Obj, parentRaw: boolean): void {
    const raw = isRawMessage(parentRaw, m.$typeName === T_ACK, m.$unknown);
    this.w.length();
    this.w.writeStrings(tag(1, WIRE_LEN), m.ids, raw);
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
