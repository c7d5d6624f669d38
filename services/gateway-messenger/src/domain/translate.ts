// Pure translation between the Messenger-style JSON API and the delivery API's protobuf messages.
// Every field the Envelope (and the send requests) carry has a JSON home, so translation is
// lossless in both directions (translate.test.ts checks that with fast-check).
//
// Numbers: int64 timestamps and sequences are JSON numbers; they are milliseconds since the
// epoch and queue positions, far below 2^53. Bytes are standard base64 (RFC 4648 §4, padded).
import { create } from "@bufbuild/protobuf";
import {
  App,
  newEnvelope,
  EnvelopeType,
  SendGroupMessageRequestSchema,
  newSendMessageRequest,
  UploadKeysRequestSchema,
  type AccountWithDevices,
  type Device,
  type EcPreKey,
  type Envelope,
  type Group,
  type PreKeyBundle,
  type SendGroupMessageRequest,
  type SendMessageRequest,
  type SignedPreKey,
  type UploadKeysRequest,
} from "@switchboard/proto";
import {
  appName,
  parseAppName,
  userFromHandle,
  userJson,
  type HandleRef,
  type RecipientJson,
  type UserJson,
} from "./users.js";

/** A device of an account, as the delivery service names one. */
export interface DeviceAddress {
  accountId: string;
  deviceId: number;
}

// ---- bytes and numbers ------------------------------------------------------------------------

const EMPTY = new Uint8Array(0);

/** Standard, padded base64 of `bytes`. */
export const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** Decodes base64 (validated by the route schemas) to bytes. */
export const fromBase64 = (text: string): Uint8Array<ArrayBuffer> => {
  const buf = Buffer.from(text, "base64");
  const out = new Uint8Array(buf.byteLength);
  out.set(buf);
  return out;
};

const num = (v: bigint): number => Number(v);
const big = (v: number): bigint => BigInt(v);

// ---- envelope types ---------------------------------------------------------------------------

const KIND_OF: ReadonlyMap<EnvelopeType, string> = new Map([
  [EnvelopeType.CIPHERTEXT, "ciphertext"],
  [EnvelopeType.PREKEY_MESSAGE, "prekey"],
  [EnvelopeType.SERVER_DELIVERY_RECEIPT, "delivery_receipt"],
  [EnvelopeType.SEALED_SENDER, "sealed_sender"],
  [EnvelopeType.SENDER_KEY_MESSAGE, "sender_key"],
  [EnvelopeType.PLAINTEXT_CONTENT, "plaintext"],
]);
const TYPE_OF: ReadonlyMap<string, EnvelopeType> = new Map([...KIND_OF].map(([t, k]) => [k, t]));

/** The ciphertext kinds a one-to-one send may carry. */
export const SEND_KINDS = ["ciphertext", "prekey", "sealed_sender", "plaintext"] as const;

/** The API name of an envelope type (`prekey`, `ciphertext`, ...); an unknown type is its number. */
export const kindOf = (type: EnvelopeType): string => KIND_OF.get(type) ?? String(type);

/** The envelope type of an API kind name (or number); UNSPECIFIED for anything else. */
export function typeOf(kind: string): EnvelopeType {
  const known = TYPE_OF.get(kind);
  if (known !== undefined) return known;
  return /^[0-9]{1,9}$/.test(kind) ? Number(kind) : EnvelopeType.UNSPECIFIED;
}

// ---- live events ------------------------------------------------------------------------------

/** Members of both event kinds. Optional members are omitted when empty, zero or false. */
export interface EventCommon {
  /** The server's message id (Envelope.id): acknowledge with it. */
  server_id: string;
  /** Queue position for this device (Envelope.sequence), increasing. */
  seq: number;
  /** Commit time, ms since the epoch. */
  server_timestamp: number;
  /** The sending user; absent for sealed-sender messages. */
  sender?: UserJson;
  sender_device?: number;
  sender_registration_id?: number;
  group_id?: string;
  ephemeral?: true;
  urgent?: true;
  forwarded?: true;
  report_tag?: string;
  /** Message franking: the server's tag over report_tag and the routing metadata (docs/safety.md). */
  server_franking_tag?: string;
  /** From a user the recipient has not accepted (a message request; docs/safety.md). */
  message_request?: true;
}

/** `{"type":"message"}`: an end-to-end-encrypted message for this device. */
export interface MessageEvent extends EventCommon {
  type: "message";
  /** The sender's client message id. */
  mid: string;
  /** How to decrypt `body`: prekey, ciphertext, sender_key, sealed_sender, plaintext. */
  kind: string;
  /** The ciphertext, base64. */
  body: string;
  /** The sender's clock, ms since the epoch. */
  timestamp: number;
}

/** `{"type":"delivery"}`: a server delivery receipt — a device of `sender` acknowledged `mids`. */
export interface DeliveryEvent extends EventCommon {
  type: "delivery";
  /** `mids`: the acknowledged message's client id; `watermark`: its client timestamp. */
  delivery: { mids: string[]; watermark: number };
  /** Receipts carry no body; present only if the server ever sends one. */
  body?: string;
}

/** A server → client event that carries an envelope. */
export type EnvelopeEvent = MessageEvent | DeliveryEvent;

function commonOf(envelope: Envelope, senderHandle: HandleRef | undefined): EventCommon {
  const event: EventCommon = {
    server_id: envelope.id,
    seq: num(envelope.sequence),
    server_timestamp: num(envelope.serverTimestampMs),
  };
  const source = envelope.source;
  if (source !== undefined) {
    event.sender =
      senderHandle !== undefined
        ? userFromHandle(source.accountId, senderHandle)
        : userJson(source.accountId, { app: envelope.sourceApp, providerId: envelope.sourceProviderId });
    event.sender_device = source.deviceId;
  }
  if (envelope.sourceRegistrationId !== 0) event.sender_registration_id = envelope.sourceRegistrationId;
  if (envelope.groupId !== "") event.group_id = envelope.groupId;
  if (envelope.ephemeral) event.ephemeral = true;
  if (envelope.urgent) event.urgent = true;
  if (envelope.forwarded) event.forwarded = true;
  if (envelope.reportTag.length > 0) event.report_tag = toBase64(envelope.reportTag);
  if (envelope.serverFrankingTag.length > 0) event.server_franking_tag = toBase64(envelope.serverFrankingTag);
  if (envelope.messageRequest) event.message_request = true;
  return event;
}

/**
 * Renders an envelope for the device it is addressed to. `senderHandle` is the sending account's
 * handle (looked up by the gateway); without it the sender is rendered with `account_id` and
 * `app` only. Server delivery receipts become `delivery` events, everything else `message`.
 */
export function envelopeToEvent(envelope: Envelope, senderHandle?: HandleRef): EnvelopeEvent {
  const common = commonOf(envelope, senderHandle);
  if (envelope.type === EnvelopeType.SERVER_DELIVERY_RECEIPT) {
    const event: DeliveryEvent = {
      type: "delivery",
      ...common,
      delivery: {
        mids: envelope.clientMessageId === "" ? [] : [envelope.clientMessageId],
        watermark: num(envelope.clientTimestampMs),
      },
    };
    if (envelope.content.length > 0) event.body = toBase64(envelope.content);
    return event;
  }
  return {
    type: "message",
    ...common,
    mid: envelope.clientMessageId,
    kind: kindOf(envelope.type),
    body: toBase64(envelope.content),
    timestamp: num(envelope.clientTimestampMs),
  };
}

/**
 * Rebuilds the envelope an event was rendered from (what an SDK does on receipt). The device the
 * event was delivered to is the destination. Receipts carry no provider id (the delivery service
 * leaves it empty), so a `delivery` event's sender app yields none.
 */
export function eventToEnvelope(
  event: EnvelopeEvent,
  destination: { address: DeviceAddress; app: App },
): Envelope {
  const sender = event.sender;
  const app = sender === undefined ? undefined : parseAppName(sender.app);
  const isReceipt = event.type === "delivery";
  return newEnvelope({
    id: event.server_id,
    clientMessageId: isReceipt ? (event.delivery.mids[0] ?? "") : event.mid,
    type: isReceipt ? EnvelopeType.SERVER_DELIVERY_RECEIPT : typeOf(event.kind),
    source:
      sender === undefined ? undefined : { accountId: sender.account_id, deviceId: event.sender_device ?? 0 },
    sourceApp: app?.app,
    sourceProviderId: isReceipt ? "" : (app?.providerId ?? ""),
    sourceRegistrationId: event.sender_registration_id ?? 0,
    destination: { accountId: destination.address.accountId, deviceId: destination.address.deviceId },
    destinationApp: destination.app,
    content: event.body === undefined ? EMPTY : fromBase64(event.body),
    serverTimestampMs: big(event.server_timestamp),
    clientTimestampMs: big(isReceipt ? event.delivery.watermark : event.timestamp),
    ephemeral: event.ephemeral === true,
    urgent: event.urgent === true,
    groupId: event.group_id ?? "",
    forwarded: event.forwarded === true,
    reportTag: event.report_tag === undefined ? EMPTY : fromBase64(event.report_tag),
    serverFrankingTag:
      event.server_franking_tag === undefined ? EMPTY : fromBase64(event.server_franking_tag),
    sequence: big(event.seq),
    messageRequest: event.message_request === true,
  });
}

// ---- sends ------------------------------------------------------------------------------------

/** `REGULAR` (push with sound: Envelope.urgent) or `NO_PUSH`. */
export type NotificationType = "REGULAR" | "NO_PUSH";

/** One recipient device's ciphertext in a send. */
export interface CiphertextJson {
  device_id: number;
  registration_id: number;
  type: string;
  body: string;
}

/** Members of `message` common to one-to-one and group sends. */
export interface MessageOptionsJson {
  /** The client's message id (idempotency key), 1-64 bytes; generated when absent. */
  mid?: string;
  /** The client's clock, ms since the epoch; the server's when absent. */
  timestamp?: number;
  forwarded?: boolean;
  report_tag?: string;
  /** Deliver only to connected devices, never store (implied by `sender_action`). */
  ephemeral?: boolean;
}

/** The body of `POST /v1/me/messages`. */
export interface SendMessageJson {
  recipient: RecipientJson;
  /** Accepted for compatibility (RESPONSE, UPDATE, MESSAGE_TAG); not carried to the recipient. */
  messaging_type?: string;
  notification_type?: NotificationType;
  /** `typing_on`/`typing_off`: the message is a sender action and therefore ephemeral. */
  sender_action?: string;
  /**
   * `false`: no server delivery receipt (`delivery` event) for the sender when a recipient device
   * acknowledges the message (SendMessageRequest.no_delivery_receipt). Default true.
   */
  server_receipt?: boolean;
  message: MessageOptionsJson & { ciphertexts: CiphertextJson[] };
}

/** The body of `POST /v1/groups/{id}/messages`. */
export interface SendGroupMessageJson {
  notification_type?: NotificationType;
  sender_action?: string;
  message: MessageOptionsJson & { body: string };
  /** The member devices the sender distributed its sender key to (checked when given). */
  expected_recipients?: { user: RecipientJson; devices: { device_id: number; registration_id: number }[] }[];
}

/** What the gateway fills in from the authenticated device and its directory look-ups. */
export interface SendContext {
  sender: DeviceAddress;
  /** Used when the message has no `mid` (a generated UUID) or no `timestamp` (now). */
  defaults: { mid: string; timestampMs: number };
}

function flagsOf(body: {
  notification_type?: NotificationType;
  sender_action?: string;
  message: MessageOptionsJson;
}) {
  return {
    ephemeral: body.message.ephemeral === true || body.sender_action !== undefined,
    urgent: body.notification_type !== "NO_PUSH",
    forwarded: body.message.forwarded === true,
    reportTag: body.message.report_tag === undefined ? EMPTY : fromBase64(body.message.report_tag),
  };
}

function optionsJson(req: {
  clientMessageId: string;
  clientTimestampMs: bigint;
  ephemeral: boolean;
  forwarded: boolean;
  reportTag: Uint8Array;
}): MessageOptionsJson {
  const out: MessageOptionsJson = { mid: req.clientMessageId, timestamp: num(req.clientTimestampMs) };
  if (req.forwarded) out.forwarded = true;
  if (req.reportTag.length > 0) out.report_tag = toBase64(req.reportTag);
  if (req.ephemeral) out.ephemeral = true;
  return out;
}

/** Translates a one-to-one send to the delivery request for `destinationAccountId`. */
export function sendFromJson(
  body: SendMessageJson,
  ctx: SendContext & { destinationAccountId: string },
): SendMessageRequest {
  // newSendMessageRequest, not create(): one per message sent (see @switchboard/proto's envelope.ts).
  return newSendMessageRequest({
    sender: ctx.sender,
    destinationAccountId: ctx.destinationAccountId,
    messages: body.message.ciphertexts.map((c) => ({
      deviceId: c.device_id,
      registrationId: c.registration_id,
      type: typeOf(c.type),
      content: fromBase64(c.body),
    })),
    clientMessageId: body.message.mid ?? ctx.defaults.mid,
    clientTimestampMs: big(body.message.timestamp ?? ctx.defaults.timestampMs),
    ...flagsOf(body),
    noDeliveryReceipt: body.server_receipt === false,
  });
}

/**
 * The canonical JSON of a one-to-one send (recipient by account id; `server_receipt` only when
 * false): the inverse of sendFromJson.
 */
export function sendToJson(req: SendMessageRequest): SendMessageJson {
  return {
    recipient: { account_id: req.destinationAccountId },
    notification_type: req.urgent ? "REGULAR" : "NO_PUSH",
    ...(req.noDeliveryReceipt ? { server_receipt: false } : {}),
    message: {
      ...optionsJson(req),
      ciphertexts: req.messages.map((m) => ({
        device_id: m.deviceId,
        registration_id: m.registrationId,
        type: kindOf(m.type),
        body: toBase64(m.content),
      })),
    },
  };
}

/**
 * Translates a group send. `expectedAccountIds[i]` is the account `expected_recipients[i].user`
 * resolved to.
 */
export function groupSendFromJson(
  body: SendGroupMessageJson,
  ctx: SendContext & { groupId: string; expectedAccountIds: string[] },
): SendGroupMessageRequest {
  return create(SendGroupMessageRequestSchema, {
    sender: ctx.sender,
    groupId: ctx.groupId,
    content: fromBase64(body.message.body),
    clientMessageId: body.message.mid ?? ctx.defaults.mid,
    clientTimestampMs: big(body.message.timestamp ?? ctx.defaults.timestampMs),
    ...flagsOf(body),
    expectedRecipients: (body.expected_recipients ?? []).map((r, i) => ({
      accountId: ctx.expectedAccountIds[i] ?? "",
      devices: r.devices.map((d) => ({ deviceId: d.device_id, registrationId: d.registration_id })),
    })),
  });
}

/** The canonical JSON of a group send: the inverse of groupSendFromJson. */
export function groupSendToJson(req: SendGroupMessageRequest): SendGroupMessageJson {
  const out: SendGroupMessageJson = {
    notification_type: req.urgent ? "REGULAR" : "NO_PUSH",
    message: { ...optionsJson(req), body: toBase64(req.content) },
  };
  if (req.expectedRecipients.length > 0) {
    out.expected_recipients = req.expectedRecipients.map((r) => ({
      user: { account_id: r.accountId },
      devices: r.devices.map((d) => ({ device_id: d.deviceId, registration_id: d.registrationId })),
    }));
  }
  return out;
}

// ---- keys -------------------------------------------------------------------------------------

/** A one-time EC pre-key. */
export interface PreKeyJson {
  key_id: number;
  public_key: string;
}

/** A signed (EC or Kyber) pre-key. */
export interface SignedPreKeyJson {
  key_id: number;
  public_key: string;
  signature: string;
}

/** The body of `PUT /v1/me/keys`; every member is optional (see KeyService.UploadKeys). */
export interface UploadKeysJson {
  identity_key?: string;
  signed_pre_key?: SignedPreKeyJson;
  one_time_pre_keys?: PreKeyJson[];
  kyber_pre_keys?: SignedPreKeyJson[];
  last_resort_kyber_pre_key?: SignedPreKeyJson;
}

/** One device's pre-key bundle. */
export interface BundleJson {
  device_id: number;
  registration_id: number;
  identity_key: string;
  signed_pre_key?: SignedPreKeyJson;
  one_time_pre_key?: PreKeyJson;
  kyber_pre_key?: SignedPreKeyJson;
  kyber_pre_key_is_last_resort: boolean;
}

const preKeyJson = (k: EcPreKey): PreKeyJson => ({ key_id: k.keyId, public_key: toBase64(k.publicKey) });
const signedJson = (k: SignedPreKey): SignedPreKeyJson => ({
  key_id: k.keyId,
  public_key: toBase64(k.publicKey),
  signature: toBase64(k.signature),
});
const preKeyFrom = (k: PreKeyJson) => ({ keyId: k.key_id, publicKey: fromBase64(k.public_key) });
const signedFrom = (k: SignedPreKeyJson) => ({
  keyId: k.key_id,
  publicKey: fromBase64(k.public_key),
  signature: fromBase64(k.signature),
});

/** Translates a key upload for `device`. */
export function uploadKeysFromJson(json: UploadKeysJson, device: DeviceAddress): UploadKeysRequest {
  return create(UploadKeysRequestSchema, {
    device,
    identityKey: json.identity_key === undefined ? EMPTY : fromBase64(json.identity_key),
    signedPreKey: json.signed_pre_key === undefined ? undefined : signedFrom(json.signed_pre_key),
    oneTimePreKeys: (json.one_time_pre_keys ?? []).map(preKeyFrom),
    kyberPreKeys: (json.kyber_pre_keys ?? []).map(signedFrom),
    lastResortKyberPreKey:
      json.last_resort_kyber_pre_key === undefined ? undefined : signedFrom(json.last_resort_kyber_pre_key),
  });
}

/** The JSON of a key upload: the inverse of uploadKeysFromJson. */
export function uploadKeysToJson(req: UploadKeysRequest): UploadKeysJson {
  const out: UploadKeysJson = {};
  if (req.identityKey.length > 0) out.identity_key = toBase64(req.identityKey);
  if (req.signedPreKey !== undefined) out.signed_pre_key = signedJson(req.signedPreKey);
  if (req.oneTimePreKeys.length > 0) out.one_time_pre_keys = req.oneTimePreKeys.map(preKeyJson);
  if (req.kyberPreKeys.length > 0) out.kyber_pre_keys = req.kyberPreKeys.map(signedJson);
  if (req.lastResortKyberPreKey !== undefined)
    out.last_resort_kyber_pre_key = signedJson(req.lastResortKyberPreKey);
  return out;
}

/** Renders one pre-key bundle. */
export function bundleToJson(b: PreKeyBundle): BundleJson {
  const out: BundleJson = {
    device_id: b.deviceId,
    registration_id: b.registrationId,
    identity_key: toBase64(b.identityKey),
    kyber_pre_key_is_last_resort: b.kyberPreKeyIsLastResort,
  };
  if (b.signedPreKey !== undefined) out.signed_pre_key = signedJson(b.signedPreKey);
  if (b.oneTimePreKey !== undefined) out.one_time_pre_key = preKeyJson(b.oneTimePreKey);
  if (b.kyberPreKey !== undefined) out.kyber_pre_key = signedJson(b.kyberPreKey);
  return out;
}

// ---- accounts and groups ----------------------------------------------------------------------

/** A device as this API renders one. */
export interface DeviceJson {
  device_id: number;
  registration_id: number;
  name: string;
  /** Registration time, ms since the epoch. */
  created_at: number;
}

/** A user with its current devices (`GET /v1/users/{user}`, group members). */
export interface ProfileJson {
  user: UserJson;
  devices: DeviceJson[];
}

/** A group thread. */
export interface GroupJson {
  id: string;
  creator: UserJson;
  /** Bumped on every membership change. */
  revision: number;
  members: ProfileJson[];
}

/** Renders a device. */
export const deviceToJson = (d: Device): DeviceJson => ({
  device_id: d.deviceId,
  registration_id: d.registrationId,
  name: d.name,
  created_at: num(d.createdAtMs),
});

/** Renders an account with its handle. */
export function accountToUser(account: AccountWithDevices["account"]): UserJson {
  if (account?.handle === undefined)
    return { account_id: account?.id ?? "", app: appName(App.UNSPECIFIED, "") };
  const h = account.handle;
  return userFromHandle(account.id, { app: h.app, providerId: h.providerId, value: h.value });
}

/** Renders an account with its devices. */
export const profileToJson = (a: AccountWithDevices): ProfileJson => ({
  user: accountToUser(a.account),
  devices: a.devices.map(deviceToJson),
});

/** Renders a group; `creator` is used when the creator is no longer a member. */
export function groupToJson(group: Group, creator?: UserJson): GroupJson {
  const members = group.members.map(profileToJson);
  return {
    id: group.id,
    creator: members.find((m) => m.user.account_id === group.creatorAccountId)?.user ??
      creator ?? { account_id: group.creatorAccountId, app: "unspecified" },
    revision: num(group.revision),
    members,
  };
}
