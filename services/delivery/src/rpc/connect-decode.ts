import type { WireReader as Reader } from "@switchboard/grpc";
import {
  readNestedOrFallback,
  readOrFallback,
  WIRE_FALLBACK as FALLBACK,
  WIRE_LEN,
  WIRE_VARINT,
} from "@switchboard/grpc";
import {
  ConnectRequestSchema,
  type AckFrame,
  type Address,
  type ConnectRequest,
  type ConnectRequestBatch,
  type OutgoingMessage,
  type SendFrame,
  type SendMessageRequest,
  SendMessageRequestSchema,
} from "@switchboard/proto";

// The hot half of the Connect stream's input, decoded without protobuf-es reflection: batches of
// `send` and `ack` frames. protobuf-es builds each message through its reflection layer (a Map per
// message, zero-value objects, a field lookup per tag), which in the bench was a fifth of
// everything the delivery service allocated. Anything this decoder does not expect — another frame
// kind, an unknown field, a repeated singular message, a wire type that does not match — makes it
// hand that frame (or the whole request) to protobuf-es instead, so the result is always what
// `fromBinary(ConnectRequestSchema, bytes)` returns (connect-decode.test.ts checks it on random
// input and fails when one of these messages gains a field). The unary `SendMessage` request is
// the same message as a `send` frame's, and is read by the same code.

/** Decodes one Connect stream message; equal to protobuf-es's `fromBinary` for any input. */
export function decodeConnectRequest(bytes: Uint8Array): ConnectRequest {
  return readOrFallback(ConnectRequestSchema, bytes, (r, end) => readConnectRequest(r, end, true));
}

/** Decodes a unary `SendMessage` request; equal to protobuf-es's `fromBinary` for any input. */
export function decodeSendMessageRequest(bytes: Uint8Array): SendMessageRequest {
  return readOrFallback(SendMessageRequestSchema, bytes, readSendRequest);
}

function readConnectRequest(r: Reader, end: number, top: boolean): ConnectRequest {
  const start = r.pos;
  let frame: ConnectRequest["frame"] = { case: undefined };
  try {
    while (r.pos < end) {
      const tag = r.tag(end);
      if ((tag & 7) !== WIRE_LEN || frame.case !== undefined) throw FALLBACK;
      const field = tag >>> 3;
      const stop = r.delimited(end);
      if (field === 3) frame = { case: "send", value: readSendFrame(r, stop) };
      else if (field === 5) frame = { case: "ack", value: readAckFrame(r, stop) };
      else if (field === 6 && top) frame = { case: "batch", value: readBatch(r, stop) };
      else throw FALLBACK;
    }
  } catch (err) {
    // A frame inside a batch falls back on its own; the top-level message as a whole.
    if (err !== FALLBACK || top) throw err;
    // Two levels (ConnectRequest, ConnectRequestBatch) above the frame.
    return readNestedOrFallback(ConnectRequestSchema, r, start, end, 2);
  }
  return { $typeName: "switchboard.delivery.v1.ConnectRequest", frame };
}

function readBatch(r: Reader, end: number): ConnectRequestBatch {
  const frames: ConnectRequest[] = [];
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag !== ((1 << 3) | WIRE_LEN)) throw FALLBACK;
    const stop = r.delimited(end);
    frames.push(readConnectRequest(r, stop, false));
  }
  return { $typeName: "switchboard.delivery.v1.ConnectRequestBatch", frames };
}

function readSendFrame(r: Reader, end: number): SendFrame {
  let correlationId = 0;
  let request: SendMessageRequest | undefined;
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | WIRE_VARINT)) correlationId = r.varint(end);
    else if (tag === ((2 << 3) | WIRE_LEN) && request === undefined) {
      const stop = r.delimited(end);
      request = readSendRequest(r, stop);
    } else throw FALLBACK;
  }
  return {
    $typeName: "switchboard.delivery.v1.SendFrame",
    correlationId: BigInt(correlationId),
    request,
  };
}

function readSendRequest(r: Reader, end: number): SendMessageRequest {
  const m: SendMessageRequest = {
    $typeName: "switchboard.delivery.v1.SendMessageRequest",
    sender: undefined,
    destinationAccountId: "",
    messages: [],
    clientMessageId: "",
    clientTimestampMs: 0n,
    ephemeral: false,
    urgent: false,
    forwarded: false,
    reportTag: new Uint8Array(0),
    noDeliveryReceipt: false,
  };
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case (1 << 3) | WIRE_LEN:
        if (m.sender !== undefined) throw FALLBACK;
        m.sender = readAddress(r, r.delimited(end));
        break;
      case (2 << 3) | WIRE_LEN:
        m.destinationAccountId = r.string(end);
        break;
      case (3 << 3) | WIRE_LEN:
        m.messages.push(readOutgoing(r, r.delimited(end)));
        break;
      case (4 << 3) | WIRE_LEN:
        m.clientMessageId = r.string(end);
        break;
      case (5 << 3) | WIRE_VARINT:
        // int64: a negative value is ten bytes long (falls back); anything below 2^53 is exact.
        m.clientTimestampMs = r.int64(end);
        break;
      case (6 << 3) | WIRE_VARINT:
        m.ephemeral = r.bool(end);
        break;
      case (7 << 3) | WIRE_VARINT:
        m.urgent = r.bool(end);
        break;
      case (8 << 3) | WIRE_VARINT:
        m.forwarded = r.bool(end);
        break;
      case (9 << 3) | WIRE_LEN:
        m.reportTag = r.bytes(end);
        break;
      case (10 << 3) | WIRE_VARINT:
        m.noDeliveryReceipt = r.bool(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readOutgoing(r: Reader, end: number): OutgoingMessage {
  const m: OutgoingMessage = {
    $typeName: "switchboard.delivery.v1.OutgoingMessage",
    deviceId: 0,
    registrationId: 0,
    type: 0,
    content: new Uint8Array(0),
  };
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case (1 << 3) | WIRE_VARINT:
        m.deviceId = r.uint32(end);
        break;
      case (2 << 3) | WIRE_VARINT:
        m.registrationId = r.uint32(end);
        break;
      case (3 << 3) | WIRE_VARINT:
        // An enum is an int32: only non-negative values here (others fall back).
        m.type = r.int32(end);
        break;
      case (4 << 3) | WIRE_LEN:
        m.content = r.bytes(end);
        break;
      default:
        throw FALLBACK;
    }
  }
  return m;
}

function readAddress(r: Reader, end: number): Address {
  const m: Address = { $typeName: "switchboard.common.v1.Address", accountId: "", deviceId: 0 };
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | WIRE_LEN)) m.accountId = r.string(end);
    else if (tag === ((2 << 3) | WIRE_VARINT)) m.deviceId = r.uint32(end);
    else throw FALLBACK;
  }
  return m;
}

function readAckFrame(r: Reader, end: number): AckFrame {
  const m: AckFrame = { $typeName: "switchboard.delivery.v1.AckFrame", device: undefined, messageIds: [] };
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | WIRE_LEN)) {
      if (m.device !== undefined) throw FALLBACK;
      m.device = readAddress(r, r.delimited(end));
    } else if (tag === ((2 << 3) | WIRE_LEN)) m.messageIds.push(r.string(end));
    else throw FALLBACK;
  }
  return m;
}
