import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { WireReader as Reader } from "@switchboard/grpc";
import {
  boolValue,
  bytesValue,
  delimitedSize,
  enumValue,
  int64Value,
  isRawMessage,
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
} from "@switchboard/grpc";
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

// A frame's value is "raw" (see @switchboard/grpc's isRawMessage) when it is a message of its type,
// made by `create` as translate.ts does: protobuf-es then uses it as is. The ChatResponse around it
// is the encoder's own init object, so no frame has a raw parent.

/**
 * Writes a ChatResponse in two passes over the frame (see @switchboard/grpc's WireWriter): `size*`
 * checks every value and records the UTF-8 length of each non-empty string, `write*` fills one
 * buffer of exactly the total size.
 */
class ResponseEncoder {
  private readonly w = new WireWriter(64);

  encode(frame: unknown): Uint8Array {
    const w = this.w;
    try {
      const f = objectValue(frame);
      const value = objectValue(f.value);
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
          isRawMessage(false, value.$typeName === T_QUEUE_DRAINED, value.$unknown);
          field = 4;
          body = 0;
          break;
        default:
          throw FALLBACK;
      }
      w.start(delimitedSize(body));
      w.byte(tag(field, WIRE_LEN));
      w.varint(body);
      if (field === 1) this.writeIncoming(value);
      else if (field === 2) this.writeSendAck(value);
      else if (field === 3) this.writeReceipt(value);
      return w.finish();
    } finally {
      w.reset();
    }
  }

  // -- pass 1: sizes ---------------------------------------------------------------------------

  private sizeIncoming(m: Obj): number {
    const w = this.w;
    const raw = isRawMessage(false, m.$typeName === T_INCOMING, m.$unknown);
    let size = w.sizeString(m.serverId, raw);
    size += w.sizeString(m.id, raw);
    size += w.sizeString(m.from, raw);
    size += w.sizeString(m.group, raw);
    const kind = enumValue(m.kind, raw);
    if (kind !== 0) size += 1 + varintSize(kind);
    const ciphertext = bytesValue(m.ciphertext, raw);
    if (ciphertext.byteLength > 0) size += delimitedSize(ciphertext.byteLength);
    const t = int64Value(m.t, raw);
    if (t !== 0) size += 1 + varint64Size(t);
    const serverT = int64Value(m.serverT, raw);
    if (serverT !== 0) size += 1 + varint64Size(serverT);
    if (boolValue(m.ephemeral, raw)) size += 2;
    if (boolValue(m.forwarded, raw)) size += 2;
    const reportTag = bytesValue(m.reportTag, raw);
    if (reportTag.byteLength > 0) size += delimitedSize(reportTag.byteLength);
    if (boolValue(m.urgent, raw)) size += 2;
    const registrationId = uint32Value(m.senderRegistrationId, raw);
    if (registrationId !== 0) size += 1 + varintSize(registrationId);
    const sequence = int64Value(m.sequence, raw);
    if (sequence !== 0) size += 1 + varint64Size(sequence);
    size += w.sizeString(m.thirdPartyProvider, raw);
    // Fields 30 and 40 take two-byte tags.
    if (boolValue(m.messageRequest, raw)) size += 3;
    const frankingTag = bytesValue(m.serverFrankingTag, raw);
    if (frankingTag.byteLength > 0) size += delimitedSize(frankingTag.byteLength, 2);
    return size;
  }

  private sizeSendAck(m: Obj): number {
    const w = this.w;
    const raw = isRawMessage(false, m.$typeName === T_SEND_ACK, m.$unknown);
    let size = w.sizeString(m.id, raw);
    const status = enumValue(m.status, raw);
    if (status !== 0) size += 1 + varintSize(status);
    size += w.sizeString(m.serverId, raw);
    const serverT = int64Value(m.serverT, raw);
    if (serverT !== 0) size += 1 + varint64Size(serverT);
    size += w.sizeStrings(m.missing, raw);
    size += w.sizeStrings(m.extra, raw);
    size += w.sizeStrings(m.stale, raw);
    return size;
  }

  private sizeReceipt(m: Obj): number {
    const w = this.w;
    const raw = isRawMessage(false, m.$typeName === T_RECEIPT, m.$unknown);
    let size = w.sizeString(m.serverId, raw);
    size += w.sizeString(m.id, raw);
    size += w.sizeString(m.from, raw);
    const t = int64Value(m.t, raw);
    if (t !== 0) size += 1 + varint64Size(t);
    return size;
  }

  // -- pass 2: bytes (values were checked in pass 1) -------------------------------------------

  private writeIncoming(m: Obj): void {
    const w = this.w;
    const raw = m.$typeName === T_INCOMING;
    w.writeString(tag(1, WIRE_LEN), m.serverId, raw);
    w.writeString(tag(2, WIRE_LEN), m.id, raw);
    w.writeString(tag(3, WIRE_LEN), m.from, raw);
    w.writeString(tag(4, WIRE_LEN), m.group, raw);
    w.writeVarint(tag(5, WIRE_VARINT), enumValue(m.kind, raw));
    w.writeBytes(tag(6, WIRE_LEN), m.ciphertext, raw);
    w.writeVarint64(tag(7, WIRE_VARINT), int64Value(m.t, raw));
    w.writeVarint64(tag(8, WIRE_VARINT), int64Value(m.serverT, raw));
    w.writeBool(tag(9, WIRE_VARINT), m.ephemeral, raw);
    w.writeBool(tag(10, WIRE_VARINT), m.forwarded, raw);
    w.writeBytes(tag(11, WIRE_LEN), m.reportTag, raw);
    w.writeBool(tag(12, WIRE_VARINT), m.urgent, raw);
    w.writeVarint(tag(13, WIRE_VARINT), uint32Value(m.senderRegistrationId, raw));
    w.writeVarint64(tag(14, WIRE_VARINT), int64Value(m.sequence, raw));
    w.writeString(tag(15, WIRE_LEN), m.thirdPartyProvider, raw);
    w.writeBool(tag(30, WIRE_VARINT), m.messageRequest, raw);
    w.writeBytes(tag(40, WIRE_LEN), m.serverFrankingTag, raw);
  }

  private writeSendAck(m: Obj): void {
    const w = this.w;
    const raw = m.$typeName === T_SEND_ACK;
    w.writeString(tag(1, WIRE_LEN), m.id, raw);
    w.writeVarint(tag(2, WIRE_VARINT), enumValue(m.status, raw));
    w.writeString(tag(3, WIRE_LEN), m.serverId, raw);
    w.writeVarint64(tag(4, WIRE_VARINT), int64Value(m.serverT, raw));
    w.writeStrings(tag(5, WIRE_LEN), m.missing, raw);
    w.writeStrings(tag(6, WIRE_LEN), m.extra, raw);
    w.writeStrings(tag(7, WIRE_LEN), m.stale, raw);
  }

  private writeReceipt(m: Obj): void {
    const w = this.w;
    const raw = m.$typeName === T_RECEIPT;
    w.writeString(tag(1, WIRE_LEN), m.serverId, raw);
    w.writeString(tag(2, WIRE_LEN), m.id, raw);
    w.writeString(tag(3, WIRE_LEN), m.from, raw);
    w.writeVarint64(tag(4, WIRE_VARINT), int64Value(m.t, raw));
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
