// Translation between the Instagram-style JSON of thread items and the shared protobuf messages.
// Pure functions: no I/O. Lossless for everything the Envelope carries (see translate.test.ts);
// the thread id is derived (group id, or the one-to-one id of sender and recipient) and the
// sender's ref is looked up by the caller.
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  App,
  newEnvelope,
  EnvelopeType,
  type Envelope,
  type SendGroupMessageRequestSchema,
  type SendMessageRequestSchema,
} from "@switchboard/proto";
import { appName, appOfName, type AppName } from "./refs.js";
import { directThreadId } from "./thread-id.js";

/** How a recipient must process an item's body: the envelope type, in JSON. */
export type ItemKind =
  "ciphertext" | "prekey" | "sealed_sender" | "sender_key" | "plaintext" | "delivery_receipt" | "unspecified";

/** Ciphertext kinds a client may send per device in a one-to-one thread. */
export type DirectCiphertextKind = "ciphertext" | "prekey" | "sealed_sender" | "plaintext";

/** `message`: stored until acknowledged; `typing`: ephemeral, only for devices connected now. */
export type ItemType = "message" | "typing";

/** `private`: one-to-one (also with oneself); `group`: a group thread (its id is the group id). */
export type ThreadType = "private" | "group";

const KIND_TO_TYPE: Record<ItemKind, EnvelopeType> = {
  ciphertext: EnvelopeType.CIPHERTEXT,
  prekey: EnvelopeType.PREKEY_MESSAGE,
  sealed_sender: EnvelopeType.SEALED_SENDER,
  sender_key: EnvelopeType.SENDER_KEY_MESSAGE,
  plaintext: EnvelopeType.PLAINTEXT_CONTENT,
  delivery_receipt: EnvelopeType.SERVER_DELIVERY_RECEIPT,
  unspecified: EnvelopeType.UNSPECIFIED,
};

/** The JSON kind of an envelope type (`unspecified` for types this gateway does not know). */
export function kindOfType(type: EnvelopeType): ItemKind {
  for (const [kind, t] of Object.entries(KIND_TO_TYPE)) if (t === type) return kind as ItemKind;
  return "unspecified";
}

/** The envelope type of a JSON kind. */
export function typeOfKind(kind: ItemKind): EnvelopeType {
  return KIND_TO_TYPE[kind];
}

/** Standard base64 (with padding) of bytes. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Bytes of standard base64 (validated by the route schemas). */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const buf = Buffer.from(text, "base64");
  const out = new Uint8Array(buf.byteLength);
  out.set(buf);
  return out;
}

/** The device that sent an item (or, for a delivery receipt, the device that acknowledged it). */
export interface NativeSender {
  account_id: string;
  device_id: number;
  registration_id: number;
  app: AppName;
  /** Set for third-party providers only. */
  provider_id?: string;
  /** The sender's user ref (`ada.l`, `whatsapp:+1555…`), when the gateway knows it. */
  ref?: string;
}

/** A thread item as streamed to one device (`event: item`, or `event: receipt` for receipts). */
export interface NativeItem {
  /** The server id; acknowledge with it. */
  server_id: string;
  /** The thread: the group id, or the one-to-one id of sender and recipient; null if the sender is sealed. */
  thread_id: string | null;
  thread_type: ThreadType;
  /** The sender's own id of the item (its idempotency key). */
  client_context: string;
  item_type: ItemType;
  kind: ItemKind;
  /** Null for sealed-sender items. */
  sender: NativeSender | null;
  /** The device this copy is for. */
  recipient: { account_id: string; device_id: number };
  /** Opaque ciphertext, base64 (empty for receipts). */
  body: string;
  /** Message-franking tag, base64; absent when none. */
  report_tag?: string;
  /** The server's franking tag, base64 (keep it to report the item; docs/safety.md); absent when none. */
  server_franking_tag?: string;
  forwarded: boolean;
  urgent: boolean;
  client_timestamp_ms: number;
  server_timestamp_ms: number;
  /** The recipient device's queue position (increasing). */
  seq: number;
}

/**
 * Renders an envelope delivered to an Instagram device as a thread item. `refOf` names sender
 * accounts the caller has resolved; others get no `ref`.
 */
export function envelopeToItem(
  envelope: Envelope,
  refOf?: (accountId: string) => string | undefined,
): NativeItem {
  const recipient = {
    account_id: envelope.destination?.accountId ?? "",
    device_id: envelope.destination?.deviceId ?? 0,
  };
  const source = envelope.source;
  let sender: NativeSender | null = null;
  if (source !== undefined) {
    sender = {
      account_id: source.accountId,
      device_id: source.deviceId,
      registration_id: envelope.sourceRegistrationId,
      app: appName(envelope.sourceApp),
    };
    if (envelope.sourceProviderId !== "") sender.provider_id = envelope.sourceProviderId;
    const ref = refOf?.(source.accountId);
    if (ref !== undefined) sender.ref = ref;
  }
  const isGroup = envelope.groupId !== "";
  const item: NativeItem = {
    server_id: envelope.id,
    thread_id: isGroup
      ? envelope.groupId
      : source === undefined
        ? null
        : directThreadId(source.accountId, recipient.account_id),
    thread_type: isGroup ? "group" : "private",
    client_context: envelope.clientMessageId,
    item_type: envelope.ephemeral ? "typing" : "message",
    kind: kindOfType(envelope.type),
    sender,
    recipient,
    body: toBase64(envelope.content),
    forwarded: envelope.forwarded,
    urgent: envelope.urgent,
    client_timestamp_ms: Number(envelope.clientTimestampMs),
    server_timestamp_ms: Number(envelope.serverTimestampMs),
    seq: Number(envelope.sequence),
  };
  if (envelope.reportTag.length > 0) item.report_tag = toBase64(envelope.reportTag);
  if (envelope.serverFrankingTag.length > 0) item.server_franking_tag = toBase64(envelope.serverFrankingTag);
  return item;
}

/** The envelope a thread item stands for (the inverse of envelopeToItem; `ref` is not part of it). */
export function itemToEnvelope(item: NativeItem): Envelope {
  const sender = item.sender;
  return newEnvelope({
    id: item.server_id,
    clientMessageId: item.client_context,
    type: typeOfKind(item.kind),
    source: sender === null ? undefined : { accountId: sender.account_id, deviceId: sender.device_id },
    sourceApp: sender === null ? App.UNSPECIFIED : appOfName(sender.app),
    sourceProviderId: sender?.provider_id ?? "",
    sourceRegistrationId: sender?.registration_id ?? 0,
    destination: { accountId: item.recipient.account_id, deviceId: item.recipient.device_id },
    destinationApp: App.INSTAGRAM,
    content: fromBase64(item.body),
    serverTimestampMs: BigInt(item.server_timestamp_ms),
    clientTimestampMs: BigInt(item.client_timestamp_ms),
    ephemeral: item.item_type === "typing",
    urgent: item.urgent,
    groupId: item.thread_type === "group" ? (item.thread_id ?? "") : "",
    forwarded: item.forwarded,
    reportTag: item.report_tag === undefined ? new Uint8Array(0) : fromBase64(item.report_tag),
    serverFrankingTag:
      item.server_franking_tag === undefined ? new Uint8Array(0) : fromBase64(item.server_franking_tag),
    sequence: BigInt(item.seq),
  });
}

/** One recipient device's ciphertext in a one-to-one send. */
export interface NativeCiphertext {
  device_id: number;
  /** The registration id the sender's session holds for the device. */
  registration_id: number;
  type: DirectCiphertextKind;
  /** base64 */
  body: string;
}

/** Fields shared by one-to-one and group item sends. */
interface NativeSendCommon {
  client_context: string;
  item_type: ItemType;
  client_timestamp_ms: number;
  urgent: boolean;
  forwarded: boolean;
  report_tag?: string;
}

/** The body of a send to a one-to-one thread (one ciphertext per recipient device). */
export interface NativeDirectSend extends NativeSendCommon {
  ciphertexts: NativeCiphertext[];
  /**
   * Whether the sender's device gets a `receipt` event when a recipient device acknowledges the
   * item (default true). False (SendMessageRequest.no_delivery_receipt) is for clients that send
   * their own end-to-end delivery receipts. Groups have no receipts, so group sends lack it.
   */
  server_receipt?: boolean;
}

/** A member's devices as the sender distributed its sender key to them. */
export interface NativeRecipientDevices {
  account_id: string;
  devices: { device_id: number; registration_id: number }[];
}

/** The body of a send to a group thread (one sender-key ciphertext for every member device). */
export interface NativeGroupSend extends NativeSendCommon {
  body: string;
  expected_recipients?: NativeRecipientDevices[];
}

type SendRequestInit = MessageInitShape<typeof SendMessageRequestSchema>;
type SendGroupRequestInit = MessageInitShape<typeof SendGroupMessageRequestSchema>;
type Address = { accountId: string; deviceId: number };

const commonToRequest = (item: NativeSendCommon) => ({
  clientMessageId: item.client_context,
  clientTimestampMs: BigInt(item.client_timestamp_ms),
  ephemeral: item.item_type === "typing",
  urgent: item.urgent,
  forwarded: item.forwarded,
  reportTag: item.report_tag === undefined ? new Uint8Array(0) : fromBase64(item.report_tag),
});

function requestToCommon(req: {
  clientMessageId?: string;
  clientTimestampMs?: bigint;
  ephemeral?: boolean;
  urgent?: boolean;
  forwarded?: boolean;
  reportTag?: Uint8Array;
}): NativeSendCommon {
  const common: NativeSendCommon = {
    client_context: req.clientMessageId ?? "",
    item_type: req.ephemeral === true ? "typing" : "message",
    client_timestamp_ms: Number(req.clientTimestampMs ?? 0n),
    urgent: req.urgent ?? false,
    forwarded: req.forwarded ?? false,
  };
  if (req.reportTag !== undefined && req.reportTag.length > 0) common.report_tag = toBase64(req.reportTag);
  return common;
}

/**
 * The delivery request for a one-to-one send by `sender` to `destinationAccountId`; `server_receipt:
 * false` sets noDeliveryReceipt (absent: the default, receipts on).
 */
export function directSendToRequest(
  item: NativeDirectSend,
  sender: Address,
  destinationAccountId: string,
): SendRequestInit {
  return {
    sender,
    destinationAccountId,
    messages: item.ciphertexts.map((c) => ({
      deviceId: c.device_id,
      registrationId: c.registration_id,
      type: typeOfKind(c.type),
      content: fromBase64(c.body),
    })),
    ...commonToRequest(item),
    noDeliveryReceipt: item.server_receipt === false,
  };
}

/** The JSON send body of a one-to-one delivery request (the inverse of directSendToRequest). */
export function requestToDirectSend(req: SendRequestInit): NativeDirectSend {
  return {
    ...requestToCommon(req),
    ciphertexts: (req.messages ?? []).map((m) => ({
      device_id: m.deviceId ?? 0,
      registration_id: m.registrationId ?? 0,
      type: kindOfType(m.type ?? EnvelopeType.UNSPECIFIED) as DirectCiphertextKind,
      body: toBase64(m.content ?? new Uint8Array(0)),
    })),
    server_receipt: req.noDeliveryReceipt !== true,
  };
}

/** The delivery request for a group send by `sender` to the group `groupId`. */
export function groupSendToRequest(
  item: NativeGroupSend,
  sender: Address,
  groupId: string,
): SendGroupRequestInit {
  return {
    sender,
    groupId,
    content: fromBase64(item.body),
    expectedRecipients: (item.expected_recipients ?? []).map((r) => ({
      accountId: r.account_id,
      devices: r.devices.map((d) => ({ deviceId: d.device_id, registrationId: d.registration_id })),
    })),
    ...commonToRequest(item),
  };
}

/** The JSON send body of a group delivery request (the inverse of groupSendToRequest). */
export function requestToGroupSend(req: SendGroupRequestInit): NativeGroupSend {
  const item: NativeGroupSend = { ...requestToCommon(req), body: toBase64(req.content ?? new Uint8Array(0)) };
  const expected = req.expectedRecipients ?? [];
  if (expected.length > 0)
    item.expected_recipients = expected.map((r) => ({
      account_id: r.accountId ?? "",
      devices: (r.devices ?? []).map((d) => ({
        device_id: d.deviceId ?? 0,
        registration_id: d.registrationId ?? 0,
      })),
    }));
  return item;
}
