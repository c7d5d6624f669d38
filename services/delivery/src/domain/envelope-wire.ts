import type { QueuedMessage, QueueInsert } from "@switchboard/storage";
import { FLAG_FORWARDED, FLAG_REQUEST, FLAG_URGENT } from "./envelope.js";
import type { Franker } from "./franking.js";

// A hand-written protobuf encoder for the hot path: a stored queue row straight to the bytes of a
// `switchboard.common.v1.Envelope` (and of a message whose field 1 is that envelope: a fan-out
// event, a ConnectResponse delivery, a ReceiveMessagesResponse). It writes exactly what
// `toBinary(EnvelopeSchema, queuedMessageToEnvelope(row, franker))` writes, byte for byte (fields
// in declaration order, proto3 defaults omitted), at a fraction of the cost of the reflective
// encoder. envelope-wire.test.ts checks that against protobuf-es on random rows and fails when
// the Envelope gains a field this file does not write: extend both together.

/** A queue row with its sequence number (stored, or just committed). */
export type EnvelopeRow = QueuedMessage | (QueueInsert & { seq: number });

/** The Envelope field numbers written here, in declaration order (checked by the test). */
export const ENVELOPE_FIELDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 40];

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const tag = (field: number, wire: number) => (field << 3) | wire;

function varintSize(v: number): number {
  // v is a non-negative safe integer here.
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Bytes of an int64 varint: negative values take ten (two's complement). */
const int64Size = (v: number): number => (v < 0 ? 10 : varintSize(v));

const strSize = (s: string): number => (s.length === 0 ? 0 : Buffer.byteLength(s, "utf8"));

class Writer {
  at = 0;
  constructor(readonly buf: Buffer) {}

  varint(v: number): void {
    const buf = this.buf;
    while (v >= 0x80) {
      buf[this.at++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    buf[this.at++] = v;
  }

  int64(v: number): void {
    if (v >= 0) {
      this.varint(v);
      return;
    }
    let u = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 9; i++) {
      this.buf[this.at++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.at++] = Number(u);
  }

  str(s: string, bytes: number): void {
    this.varint(bytes);
    this.at += this.buf.write(s, this.at, bytes, "utf8");
  }

  bytes(b: Uint8Array): void {
    this.varint(b.byteLength);
    this.buf.set(b, this.at);
    this.at += b.byteLength;
  }
}

/** Size of an Address { account_id = 1; device_id = 2 } body. */
const addressSize = (accountBytes: number, deviceId: number) =>
  (accountBytes > 0 ? 1 + varintSize(accountBytes) + accountBytes : 0) +
  (deviceId !== 0 ? 1 + varintSize(deviceId) : 0);

/** Options of {@link encodeEnvelopeRow}. */
export interface EnvelopeWireOptions {
  /** Adds the server franking tag to a row with a franking commitment (`report_tag`). */
  franker?: Franker | undefined;
  /** Wrap the envelope as field 1 of an outer message (a fan-out event or a stream response). */
  asField1?: boolean;
  /** Leave out content longer than this many bytes (a wake-up only: the reader fetches the row). */
  maxContentBytes?: number;
}

/**
 * Encodes a queue row as an Envelope (or, with `asField1`, as a message whose field 1 is that
 * Envelope), identical to protobuf-es' encoding of `queuedMessageToEnvelope(row, franker)`.
 */
export function encodeEnvelopeRow(row: EnvelopeRow, options: EnvelopeWireOptions = {}): Buffer {
  const id = row.message_id;
  const idBytes = strSize(id);
  const cmid = row.client_message_id;
  const cmidBytes = strSize(cmid);
  const type = Number(row.type);
  const hasSource = row.source_account_id !== null;
  const sourceAccount = row.source_account_id ?? "";
  const sourceAccountBytes = strSize(sourceAccount);
  const sourceDevice = hasSource ? Number(row.source_device_id ?? 0) : 0;
  const sourceApp = Number(row.source_app);
  const provider = row.source_provider_id;
  const providerBytes = strSize(provider);
  const registration = Number(row.source_registration_id);
  const destBytes = strSize(row.account_id);
  const destDevice = Number(row.device_id);
  const destApp = Number(row.app);
  let content = row.content;
  if (content && options.maxContentBytes !== undefined && content.byteLength > options.maxContentBytes)
    content = null;
  const serverTs = Number(row.server_timestamp_ms);
  const clientTs = Number(row.client_timestamp_ms);
  const flags = row.flags;
  const groupId = row.group_id ?? "";
  const groupBytes = strSize(groupId);
  const reportTag = row.report_tag;
  const seq = Number(row.seq);
  const frankingTag =
    options.franker && row.report_tag
      ? options.franker.tag({
          commitment: row.report_tag,
          sourceAccountId: row.source_account_id ?? "",
          sourceDeviceId: row.source_account_id === null ? 0 : (row.source_device_id ?? 0),
          destinationAccountId: row.account_id,
          serverTimestampMs: serverTs,
          messageId: row.message_id,
        })
      : null;

  const sourceSize = hasSource ? addressSize(sourceAccountBytes, sourceDevice) : 0;
  const destSize = addressSize(destBytes, destDevice);
  let size = 0;
  if (idBytes > 0) size += 1 + varintSize(idBytes) + idBytes;
  if (cmidBytes > 0) size += 1 + varintSize(cmidBytes) + cmidBytes;
  if (type !== 0) size += 1 + varintSize(type);
  if (hasSource) size += 1 + varintSize(sourceSize) + sourceSize;
  if (sourceApp !== 0) size += 1 + varintSize(sourceApp);
  if (providerBytes > 0) size += 1 + varintSize(providerBytes) + providerBytes;
  if (registration !== 0) size += 1 + varintSize(registration);
  size += 1 + varintSize(destSize) + destSize;
  if (destApp !== 0) size += 1 + varintSize(destApp);
  if (content && content.byteLength > 0) size += 1 + varintSize(content.byteLength) + content.byteLength;
  if (serverTs !== 0) size += 1 + int64Size(serverTs);
  if (clientTs !== 0) size += 1 + int64Size(clientTs);
  // ephemeral (13) is always false for a stored row.
  if (flags & FLAG_URGENT) size += 2;
  if (groupBytes > 0) size += 1 + varintSize(groupBytes) + groupBytes;
  if (flags & FLAG_FORWARDED) size += 3;
  if (reportTag && reportTag.byteLength > 0)
    size += 2 + varintSize(reportTag.byteLength) + reportTag.byteLength;
  if (seq !== 0) size += 2 + int64Size(seq);
  if (frankingTag && frankingTag.byteLength > 0)
    size += 2 + varintSize(frankingTag.byteLength) + frankingTag.byteLength;
  if (flags & FLAG_REQUEST) size += 3;

  const outer = options.asField1 ? 1 + varintSize(size) : 0;
  const w = new Writer(Buffer.allocUnsafe(outer + size));
  if (options.asField1) {
    w.buf[w.at++] = tag(1, WIRE_LEN);
    w.varint(size);
  }
  if (idBytes > 0) {
    w.buf[w.at++] = tag(1, WIRE_LEN);
    w.str(id, idBytes);
  }
  if (cmidBytes > 0) {
    w.buf[w.at++] = tag(2, WIRE_LEN);
    w.str(cmid, cmidBytes);
  }
  if (type !== 0) {
    w.buf[w.at++] = tag(3, WIRE_VARINT);
    w.varint(type);
  }
  if (hasSource) {
    w.buf[w.at++] = tag(4, WIRE_LEN);
    w.varint(sourceSize);
    if (sourceAccountBytes > 0) {
      w.buf[w.at++] = tag(1, WIRE_LEN);
      w.str(sourceAccount, sourceAccountBytes);
    }
    if (sourceDevice !== 0) {
      w.buf[w.at++] = tag(2, WIRE_VARINT);
      w.varint(sourceDevice);
    }
  }
  if (sourceApp !== 0) {
    w.buf[w.at++] = tag(5, WIRE_VARINT);
    w.varint(sourceApp);
  }
  if (providerBytes > 0) {
    w.buf[w.at++] = tag(6, WIRE_LEN);
    w.str(provider, providerBytes);
  }
  if (registration !== 0) {
    w.buf[w.at++] = tag(7, WIRE_VARINT);
    w.varint(registration);
  }
  w.buf[w.at++] = tag(8, WIRE_LEN);
  w.varint(destSize);
  if (destBytes > 0) {
    w.buf[w.at++] = tag(1, WIRE_LEN);
    w.str(row.account_id, destBytes);
  }
  if (destDevice !== 0) {
    w.buf[w.at++] = tag(2, WIRE_VARINT);
    w.varint(destDevice);
  }
  if (destApp !== 0) {
    w.buf[w.at++] = tag(9, WIRE_VARINT);
    w.varint(destApp);
  }
  if (content && content.byteLength > 0) {
    w.buf[w.at++] = tag(10, WIRE_LEN);
    w.bytes(content);
  }
  if (serverTs !== 0) {
    w.buf[w.at++] = tag(11, WIRE_VARINT);
    w.int64(serverTs);
  }
  if (clientTs !== 0) {
    w.buf[w.at++] = tag(12, WIRE_VARINT);
    w.int64(clientTs);
  }
  if (flags & FLAG_URGENT) {
    w.buf[w.at++] = tag(14, WIRE_VARINT);
    w.buf[w.at++] = 1;
  }
  if (groupBytes > 0) {
    w.buf[w.at++] = tag(15, WIRE_LEN);
    w.str(groupId, groupBytes);
  }
  if (flags & FLAG_FORWARDED) {
    w.varint(tag(16, WIRE_VARINT));
    w.buf[w.at++] = 1;
  }
  if (reportTag && reportTag.byteLength > 0) {
    w.varint(tag(17, WIRE_LEN));
    w.bytes(reportTag);
  }
  if (seq !== 0) {
    w.varint(tag(18, WIRE_VARINT));
    w.int64(seq);
  }
  if (frankingTag && frankingTag.byteLength > 0) {
    w.varint(tag(19, WIRE_LEN));
    w.bytes(frankingTag);
  }
  if (flags & FLAG_REQUEST) {
    w.varint(tag(40, WIRE_VARINT));
    w.buf[w.at++] = 1;
  }
  if (w.at !== w.buf.byteLength) throw new Error(`envelope size mismatch: ${w.at} != ${w.buf.byteLength}`);
  return w.buf;
}

/** The fields of an Envelope the delivery path routes by, read without decoding the rest. */
export interface EnvelopeSummary {
  id: string;
  type: number;
  contentBytes: number;
  serverTimestampMs: number;
  ephemeral: boolean;
  sequence: number;
}

/**
 * Reads the routing fields of a message whose only field is field 1, an Envelope (a fan-out
 * message event). Returns undefined if `wire` is not exactly that (the caller then decodes it in
 * full); unknown envelope fields are skipped.
 */
export function peekEnvelopeField1(wire: Uint8Array): EnvelopeSummary | undefined {
  if (wire.byteLength < 2 || wire[0] !== tag(1, WIRE_LEN)) return undefined;
  const r = new Reader(wire, 1);
  const length = r.varint();
  if (length === undefined || r.at + length !== wire.byteLength) return undefined;
  const out: EnvelopeSummary = {
    id: "",
    type: 0,
    contentBytes: 0,
    serverTimestampMs: 0,
    ephemeral: false,
    sequence: 0,
  };
  while (r.at < wire.byteLength) {
    const t = r.varint();
    if (t === undefined) return undefined;
    const field = Math.floor(t / 8);
    const wireType = t & 7;
    if (wireType === WIRE_VARINT) {
      const v = r.varint();
      if (v === undefined) return undefined;
      if (field === 3) out.type = v;
      else if (field === 11) out.serverTimestampMs = v;
      else if (field === 13) out.ephemeral = v !== 0;
      else if (field === 18) out.sequence = v;
    } else if (wireType === WIRE_LEN) {
      const n = r.varint();
      if (n === undefined || r.at + n > wire.byteLength) return undefined;
      if (field === 1) out.id = Buffer.from(wire.buffer, wire.byteOffset + r.at, n).toString("utf8");
      else if (field === 10) out.contentBytes = n;
      r.at += n;
    } else if (wireType === 1) r.at += 8;
    else if (wireType === 5) r.at += 4;
    else return undefined;
  }
  return r.at === wire.byteLength ? out : undefined;
}

class Reader {
  constructor(
    readonly buf: Uint8Array,
    public at: number,
  ) {}

  /** A varint as a number (exact up to 2^53); undefined when truncated or over ten bytes. */
  varint(): number | undefined {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.buf.byteLength) return undefined;
      const b = this.buf[this.at++] as number;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    return undefined;
  }
}
