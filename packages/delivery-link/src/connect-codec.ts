import { create, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WireReader } from "@switchboard/grpc";
import {
  boolValue,
  bytesValue,
  delimitedSize,
  enumValue,
  int64Value,
  isRawMessage,
  listValue,
  messageValue,
  objectValue,
  readNestedOrFallback,
  readOrFallback,
  uint32Value,
  uint64Value,
  varint64Size,
  varintSize,
  WIRE_FALLBACK as FALLBACK,
  WIRE_LEN,
  WIRE_VARINT,
  wireTag as tag,
  WireWriter,
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

/**
 * Writes a ConnectRequest in two passes over the same objects (see @switchboard/grpc's WireWriter):
 * `size*` checks every value and records sizes, `write*` fills one buffer of exactly the total
 * size. A batch frame that falls back is encoded by protobuf-es in the first pass, recorded as a
 * negative table entry (-1 for the first such frame, -2 for the next, ...), and copied in the second.
 */
class RequestEncoder {
  private readonly w = new WireWriter(256);
  private fallbacks: Uint8Array[] = [];

  encode(init: unknown): Uint8Array {
    try {
      this.w.start(this.sizeRequest(objectValue(init), false));
      this.writeRequest(init as Obj, false, true);
      return this.w.finish();
    } finally {
      this.reset();
    }
  }

  /** A SendMessageRequest on its own (the unary SendMessage call). */
  encodeSendRequest(init: unknown): Uint8Array {
    try {
      this.w.start(this.sizeSendRequest(objectValue(init), false));
      this.writeSendRequest(init as Obj, false, true);
      return this.w.finish();
    } finally {
      this.reset();
    }
  }

  private reset(): void {
    this.w.reset();
    if (this.fallbacks.length > 0) this.fallbacks = [];
  }

  // -- pass 1: sizes ---------------------------------------------------------------------------

  /** A ConnectRequest body (in a batch, or top level); its entry holds the size. */
  private sizeRequest(m: Obj, parentRaw: boolean): number {
    const raw = isRawMessage(parentRaw, m.$typeName === T_REQUEST, m.$unknown);
    const frame = objectValue(m.frame);
    const value = objectValue(frame.value);
    const entry = this.w.reserve();
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
    this.w.set(entry, size);
    return size;
  }

  private sizeBatch(m: Obj, parentRaw: boolean): number {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_BATCH, m.$unknown);
    const entry = w.reserve();
    let size = 0;
    for (const item of listValue(m.frames, raw)) {
      // protobuf-es writes a null item as an empty frame, which no frame of its own would be:
      // objectValue lets the enclosing message fall back instead.
      const frame = objectValue(item);
      const mark = w.recorded;
      let n: number;
      try {
        n = this.sizeRequest(frame, raw);
      } catch (err) {
        if (err !== FALLBACK) throw err;
        w.truncate(mark);
        const fallback = raw
          ? toBinary(ConnectRequestSchema, frame as ConnectRequest)
          : toBinary(ConnectRequestSchema, create(ConnectRequestSchema, frame as ConnectRequestInit));
        this.fallbacks.push(fallback);
        w.push(-this.fallbacks.length);
        n = fallback.byteLength;
      }
      size += delimitedSize(n);
    }
    w.set(entry, size);
    return size;
  }

  private sizeSendFrame(m: Obj, parentRaw: boolean): number {
    const raw = isRawMessage(parentRaw, m.$typeName === T_SEND_FRAME, m.$unknown);
    const entry = this.w.reserve();
    let size = 0;
    const correlationId = uint64Value(m.correlationId, raw);
    if (correlationId !== 0) size += 1 + varint64Size(correlationId);
    const request = messageValue(m.request, raw);
    if (request !== undefined) size += delimitedSize(this.sizeSendRequest(request, raw));
    this.w.set(entry, size);
    return size;
  }

  private sizeSendRequest(m: Obj, parentRaw: boolean): number {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_SEND_REQUEST, m.$unknown);
    const entry = w.reserve();
    let size = 0;
    const sender = messageValue(m.sender, raw);
    if (sender !== undefined) size += delimitedSize(this.sizeAddress(sender, raw));
    size += w.sizeString(m.destinationAccountId, raw);
    for (const item of listValue(m.messages, raw)) {
      size += delimitedSize(this.sizeOutgoing(objectValue(item), raw));
    }
    size += w.sizeString(m.clientMessageId, raw);
    const timestamp = int64Value(m.clientTimestampMs, raw);
    if (timestamp !== 0) size += 1 + varint64Size(timestamp);
    if (boolValue(m.ephemeral, raw)) size += 2;
    if (boolValue(m.urgent, raw)) size += 2;
    if (boolValue(m.forwarded, raw)) size += 2;
    const reportTag = bytesValue(m.reportTag, raw);
    if (reportTag.byteLength > 0) size += delimitedSize(reportTag.byteLength);
    if (boolValue(m.noDeliveryReceipt, raw)) size += 2;
    w.set(entry, size);
    return size;
  }

  private sizeOutgoing(m: Obj, parentRaw: boolean): number {
    const raw = isRawMessage(parentRaw, m.$typeName === T_OUTGOING, m.$unknown);
    const entry = this.w.reserve();
    let size = 0;
    const deviceId = uint32Value(m.deviceId, raw);
    if (deviceId !== 0) size += 1 + varintSize(deviceId);
    const registrationId = uint32Value(m.registrationId, raw);
    if (registrationId !== 0) size += 1 + varintSize(registrationId);
    const type = enumValue(m.type, raw);
    if (type !== 0) size += 1 + varintSize(type);
    const content = bytesValue(m.content, raw);
    if (content.byteLength > 0) size += delimitedSize(content.byteLength);
    this.w.set(entry, size);
    return size;
  }

  private sizeAck(m: Obj, parentRaw: boolean): number {
    const raw = isRawMessage(parentRaw, m.$typeName === T_ACK, m.$unknown);
    const entry = this.w.reserve();
    let size = 0;
    const device = messageValue(m.device, raw);
    if (device !== undefined) size += delimitedSize(this.sizeAddress(device, raw));
    size += this.w.sizeStrings(m.messageIds, raw);
    this.w.set(entry, size);
    return size;
  }

  private sizeAddress(m: Obj, parentRaw: boolean): number {
    const raw = isRawMessage(parentRaw, m.$typeName === T_ADDRESS, m.$unknown);
    const entry = this.w.reserve();
    let size = this.w.sizeString(m.accountId, raw);
    const deviceId = uint32Value(m.deviceId, raw);
    if (deviceId !== 0) size += 1 + varintSize(deviceId);
    this.w.set(entry, size);
    return size;
  }

  // -- pass 2: bytes (values were checked in pass 1) -------------------------------------------

  private writeRequest(m: Obj, parentRaw: boolean, top: boolean): void {
    const raw = isRawMessage(parentRaw, m.$typeName === T_REQUEST, m.$unknown);
    if (top) this.w.skip();
    else this.w.length();
    const frame = m.frame as Obj;
    const value = frame.value as Obj;
    switch (frame.case) {
      case "send":
        this.w.byte(tag(3, WIRE_LEN));
        return this.writeSendFrame(value, raw);
      case "ack":
        this.w.byte(tag(5, WIRE_LEN));
        return this.writeAck(value, raw);
      default:
        this.w.byte(tag(6, WIRE_LEN));
        return this.writeBatch(value, raw);
    }
  }

  private writeBatch(m: Obj, parentRaw: boolean): void {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_BATCH, m.$unknown);
    w.length();
    for (const item of listValue(m.frames, raw)) {
      w.byte(tag(1, WIRE_LEN));
      const entry = w.peek();
      if (entry >= 0) this.writeRequest(item as Obj, raw, false);
      else {
        w.skip();
        w.bytes(this.fallbacks[-entry - 1] as Uint8Array);
      }
    }
  }

  private writeSendFrame(m: Obj, parentRaw: boolean): void {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_SEND_FRAME, m.$unknown);
    w.length();
    w.writeVarint64(tag(1, WIRE_VARINT), uint64Value(m.correlationId, raw));
    const request = messageValue(m.request, raw);
    if (request !== undefined) {
      w.byte(tag(2, WIRE_LEN));
      this.writeSendRequest(request, raw);
    }
  }

  private writeSendRequest(m: Obj, parentRaw: boolean, top = false): void {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_SEND_REQUEST, m.$unknown);
    if (top) w.skip();
    else w.length();
    const sender = messageValue(m.sender, raw);
    if (sender !== undefined) {
      w.byte(tag(1, WIRE_LEN));
      this.writeAddress(sender, raw);
    }
    w.writeString(tag(2, WIRE_LEN), m.destinationAccountId, raw);
    for (const item of listValue(m.messages, raw)) {
      w.byte(tag(3, WIRE_LEN));
      this.writeOutgoing(item as Obj, raw);
    }
    w.writeString(tag(4, WIRE_LEN), m.clientMessageId, raw);
    w.writeVarint64(tag(5, WIRE_VARINT), int64Value(m.clientTimestampMs, raw));
    w.writeBool(tag(6, WIRE_VARINT), m.ephemeral, raw);
    w.writeBool(tag(7, WIRE_VARINT), m.urgent, raw);
    w.writeBool(tag(8, WIRE_VARINT), m.forwarded, raw);
    w.writeBytes(tag(9, WIRE_LEN), m.reportTag, raw);
    w.writeBool(tag(10, WIRE_VARINT), m.noDeliveryReceipt, raw);
  }

  private writeOutgoing(m: Obj, parentRaw: boolean): void {
    const w = this.w;
    const raw = isRawMessage(parentRaw, m.$typeName === T_OUTGOING, m.$unknown);
    w.length();
    w.writeVarint(tag(1, WIRE_VARINT), uint32Value(m.deviceId, raw));
    w.writeVarint(tag(2, WIRE_VARINT), uint32Value(m.registrationId, raw));
    w.writeVarint(tag(3, WIRE_VARINT), enumValue(m.type, raw));
    w.writeBytes(tag(4, WIRE_LEN), m.content, raw);
  }

  private writeAck(m: Obj, parentRaw: boolean): void {
    const raw = isRawMessage(parentRaw, m.$typeName === T_ACK, m.$unknown);
    this.w.length();
    const device = messageValue(m.device, raw);
    if (device !== undefined) {
      this.w.byte(tag(1, WIRE_LEN));
      this.writeAddress(device, raw);
    }
    this.w.writeStrings(tag(2, WIRE_LEN), m.messageIds, raw);
  }

  private writeAddress(m: Obj, parentRaw: boolean): void {
    const raw = isRawMessage(parentRaw, m.$typeName === T_ADDRESS, m.$unknown);
    this.w.length();
    this.w.writeString(tag(1, WIRE_LEN), m.accountId, raw);
    this.w.writeVarint(tag(2, WIRE_VARINT), uint32Value(m.deviceId, raw));
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
