// JSON schemas shared by the routes. Each becomes a component of the OpenAPI document
// (GET /openapi.json) under its $id; routes refer to them as { $ref: "<Id>#" }.
import { SEND_KINDS } from "../domain/translate.js";

/** Standard padded base64 (RFC 4648 §4). */
export const BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";
/** Base64 length of the largest ciphertext the delivery service accepts by default (256 KiB). */
const MAX_CIPHERTEXT_B64 = 4 * Math.ceil((256 * 1024) / 3);

export const b64 = (maxLength: number, description?: string) => ({
  type: "string",
  contentEncoding: "base64",
  pattern: BASE64_PATTERN,
  maxLength,
  ...(description === undefined ? {} : { description }),
});

const uuid = { type: "string", format: "uuid" } as const;
const u32 = { type: "integer", minimum: 0, maximum: 4294967295 } as const;
const deviceId = { type: "integer", minimum: 1, maximum: 1000 } as const;
const registrationId = { type: "integer", minimum: 1, maximum: 16380 } as const;
const millis = { type: "integer", description: "milliseconds since the Unix epoch" } as const;

const UserSchema = {
  $id: "User",
  type: "object",
  description:
    "A user of any app in this API's idiom: the service-wide account_id, the app, and that app's handle field " +
    "(id for Messenger-style users, phone for WhatsApp-style, username for Instagram-style, handle for third parties).",
  required: ["account_id", "app"],
  properties: {
    account_id: {
      ...uuid,
      description: "service-wide account id (stable across apps; E2EE session address)",
    },
    app: { type: "string", description: "messenger, whatsapp, instagram or provider:<id>" },
    id: { type: "string", description: "Messenger-style numeric user id" },
    phone: { type: "string", description: "WhatsApp-style E.164 phone number" },
    username: { type: "string", description: "Instagram-style username" },
    handle: { type: "string", description: "third-party handle" },
  },
  additionalProperties: false,
  examples: [
    { account_id: "0b6f3c52-3a4e-4a43-9a55-0c7e0b1e9d10", app: "messenger", id: "100004" },
    { account_id: "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01", app: "whatsapp", phone: "+15551234567" },
  ],
} as const;

const RecipientSchema = {
  $id: "Recipient",
  type: "object",
  description:
    'A user of any app: {"id":"100004"} (Messenger-style), {"app":"whatsapp","phone":"+15551234567"}, ' +
    '{"app":"instagram","username":"ada.l"}, {"app":"provider:acme","handle":"alice"}, or {"account_id":"<uuid>"}. ' +
    "account_id, when present, wins over the other members (so a returned User is a valid Recipient).",
  minProperties: 1,
  properties: {
    account_id: uuid,
    app: { type: "string", pattern: "^(messenger|whatsapp|instagram|provider:[a-z0-9][a-z0-9-]{0,31})$" },
    id: { type: "string", pattern: "^[1-9][0-9]{0,19}$" },
    phone: { type: "string", maxLength: 64 },
    username: { type: "string", maxLength: 64 },
    handle: { type: "string", maxLength: 64 },
  },
  additionalProperties: false,
  examples: [
    { id: "100004" },
    { app: "whatsapp", phone: "+15551234567" },
    { app: "instagram", username: "ada.l" },
  ],
} as const;

const DeviceSchema = {
  $id: "Device",
  type: "object",
  required: ["device_id", "registration_id", "name", "created_at"],
  properties: {
    device_id: { type: "integer" },
    registration_id: { type: "integer" },
    name: { type: "string" },
    created_at: millis,
  },
  additionalProperties: false,
} as const;

const ProfileSchema = {
  $id: "Profile",
  type: "object",
  description: "A user with its current devices.",
  required: ["user", "devices"],
  properties: { user: { $ref: "User#" }, devices: { type: "array", items: { $ref: "Device#" } } },
  additionalProperties: false,
} as const;

const GroupSchema = {
  $id: "Group",
  type: "object",
  description: "A group thread. Members may belong to any app.",
  required: ["id", "creator", "revision", "members"],
  properties: {
    id: { ...uuid, description: "thread id (the delivery service's group id)" },
    creator: { $ref: "User#" },
    revision: {
      type: "integer",
      description: "bumped on every membership change; rotate sender keys after a removal",
    },
    members: { type: "array", items: { $ref: "Profile#" } },
  },
  additionalProperties: false,
} as const;

const PreKeySchema = {
  $id: "PreKey",
  type: "object",
  required: ["key_id", "public_key"],
  properties: { key_id: u32, public_key: b64(64, "serialized public key (33 bytes)") },
  additionalProperties: false,
} as const;

const SignedPreKeySchema = {
  $id: "SignedPreKey",
  type: "object",
  required: ["key_id", "public_key", "signature"],
  properties: {
    key_id: u32,
    public_key: b64(4096, "serialized public key (EC 33 bytes, Kyber-1024 1569 bytes)"),
    signature: b64(128, "identity-key signature (64 bytes)"),
  },
  additionalProperties: false,
} as const;

const BundleSchema = {
  $id: "PreKeyBundle",
  type: "object",
  required: ["device_id", "registration_id", "identity_key", "kyber_pre_key_is_last_resort"],
  properties: {
    device_id: { type: "integer" },
    registration_id: { type: "integer" },
    identity_key: { type: "string", contentEncoding: "base64" },
    signed_pre_key: { $ref: "SignedPreKey#" },
    one_time_pre_key: { $ref: "PreKey#" },
    kyber_pre_key: { $ref: "SignedPreKey#" },
    kyber_pre_key_is_last_resort: { type: "boolean" },
  },
  additionalProperties: false,
} as const;

const ProblemSchema = {
  $id: "Problem",
  type: "object",
  description:
    "RFC 9457 problem details (application/problem+json). Schema failures have reason INVALID_REQUEST and an " +
    "errors list; DEVICES_CHANGED (409) has missing/extra/stale device lists.",
  required: ["type", "title", "status", "detail", "reason", "code"],
  properties: {
    type: { type: "string", examples: ["/errors/recipient-not-found"] },
    title: { type: "string" },
    status: { type: "integer" },
    detail: { type: "string" },
    reason: { type: "string", description: "stable machine-readable reason, UPPER_SNAKE_CASE" },
    code: { type: "string", description: "canonical code: INVALID_ARGUMENT, NOT_FOUND, ..." },
    requestId: { type: "string" },
    errors: {
      type: "array",
      items: {
        type: "object",
        properties: {
          location: { type: "string" },
          pointer: { type: "string" },
          message: { type: "string" },
          keyword: { type: "string" },
          property: { type: "string" },
        },
      },
    },
    account_id: { ...uuid, description: "DEVICES_CHANGED: the recipient account" },
    missing: {
      type: "array",
      items: { type: "integer" },
      description: "DEVICES_CHANGED: devices to add (fetch their keys)",
    },
    extra: {
      type: "array",
      items: { type: "integer" },
      description: "DEVICES_CHANGED: devices that no longer exist",
    },
    stale: {
      type: "array",
      items: { type: "integer" },
      description: "DEVICES_CHANGED: reinstalled devices (re-fetch keys)",
    },
    accounts: {
      type: "array",
      description: "DEVICES_CHANGED on a group send: one entry per member account whose devices differ",
      items: {
        type: "object",
        properties: {
          account_id: uuid,
          missing: { type: "array", items: { type: "integer" } },
          extra: { type: "array", items: { type: "integer" } },
          stale: { type: "array", items: { type: "integer" } },
        },
      },
    },
  },
  additionalProperties: true,
} as const;

const eventCommon = {
  server_id: { ...uuid, description: "acknowledge with this id" },
  seq: { type: "integer", description: "queue position for this device, increasing" },
  server_timestamp: millis,
  sender: { $ref: "User#" },
  sender_device: { type: "integer" },
  sender_registration_id: { type: "integer" },
  group_id: uuid,
  ephemeral: { const: true },
  urgent: { const: true },
  forwarded: { const: true },
  report_tag: { type: "string", contentEncoding: "base64" },
  server_franking_tag: {
    type: "string",
    contentEncoding: "base64",
    description: "message franking: keep it to report the message (POST /v1/me/reports; docs/safety.md)",
  },
  message_request: {
    const: true,
    description: "from a user the recipient has not accepted: show it as a message request (docs/safety.md)",
  },
} as const;

const MessageEventSchema = {
  $id: "StreamMessageEvent",
  type: "object",
  description:
    'WebSocket server → client: {"type":"message"}, an end-to-end-encrypted message for this device.',
  required: ["type", "server_id", "seq", "server_timestamp", "mid", "kind", "body", "timestamp"],
  properties: {
    type: { const: "message" },
    ...eventCommon,
    mid: { type: "string", description: "the sender's client message id" },
    kind: { type: "string", examples: ["prekey", "ciphertext", "sender_key", "sealed_sender", "plaintext"] },
    body: { type: "string", contentEncoding: "base64", description: "ciphertext" },
    timestamp: millis,
  },
} as const;

const DeliveryEventSchema = {
  $id: "StreamDeliveryEvent",
  type: "object",
  description:
    'WebSocket server → client: {"type":"delivery"}, a server delivery receipt: device sender_device of sender ' +
    "acknowledged the message whose mid is delivery.mids[0] (sent at delivery.watermark). Acknowledge it like a message.",
  required: ["type", "server_id", "seq", "server_timestamp", "delivery"],
  properties: {
    type: { const: "delivery" },
    ...eventCommon,
    delivery: {
      type: "object",
      properties: { mids: { type: "array", items: { type: "string" } }, watermark: millis },
    },
  },
} as const;

const ControlEventSchema = {
  $id: "StreamControlEvent",
  type: "object",
  description:
    'WebSocket server → client: {"type":"queue_empty"} (backlog delivered; repeated after a reconnect to the delivery ' +
    'service), {"type":"displaced"} (another connection of this device took over; the socket closes with 4000), ' +
    '{"type":"pong"}, or {"type":"error","problem":{...}} (a bad frame; the socket stays open).',
  required: ["type"],
  properties: {
    type: { enum: ["queue_empty", "displaced", "pong", "error"] },
    problem: { $ref: "Problem#" },
  },
} as const;

/** `message` members common to one-to-one and group sends. */
export const messageOptions = {
  mid: {
    type: "string",
    minLength: 1,
    maxLength: 64,
    description: "client message id (idempotency key); generated when absent",
  },
  timestamp: {
    type: "integer",
    description: "the client's clock, ms since the epoch; the server's when absent",
  },
  forwarded: { type: "boolean" },
  report_tag: b64(88, "message-franking commitment (at most 64 bytes)"),
  ephemeral: { type: "boolean", description: "deliver only to connected devices and never store" },
} as const;

export const ciphertextSchema = {
  type: "object",
  required: ["device_id", "registration_id", "type", "body"],
  properties: {
    device_id: deviceId,
    registration_id: registrationId,
    type: { type: "string", enum: [...SEND_KINDS] },
    body: b64(MAX_CIPHERTEXT_B64, "libsignal ciphertext for this device"),
  },
  additionalProperties: false,
} as const;

export const sendOutcomeFields = {
  message_id: { ...uuid, description: "server message id (shared by every recipient device's copy)" },
  mid: { type: "string" },
  timestamp: { ...millis, description: "server commit time" },
  duplicate: { type: "boolean", description: "true when this answers a retry with the same mid" },
} as const;

const ClientFrameSchema = {
  $id: "StreamClientFrame",
  type: "object",
  description:
    'WebSocket client → server: {"type":"ack","ids":["<server_id>", ...]} (1-1000 ids) removes delivered messages ' +
    'and receipts from the device queue; {"type":"ping"} is answered with {"type":"pong"}; {"type":"send",...} ' +
    '(StreamSendFrame) and {"type":"send_group",...} (StreamSendGroupFrame) send messages, each answered with a ' +
    "StreamSendResult carrying the frame's ref.",
  required: ["type"],
  properties: {
    type: { enum: ["ack", "ping", "send", "send_group"] },
    ids: { type: "array", minItems: 1, maxItems: 1000, items: uuid },
  },
} as const;

/** `ref` of a send frame: the client's correlation id, echoed in its StreamSendResult. */
const sendRef = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  description: "the client's correlation id, echoed in the StreamSendResult (unique among its pending sends)",
} as const;

/** The body of POST /v1/me/messages. */
export const sendMessageBody = {
  type: "object",
  required: ["recipient", "message"],
  properties: {
    recipient: { $ref: "Recipient#" },
    messaging_type: {
      type: "string",
      enum: ["RESPONSE", "UPDATE", "MESSAGE_TAG"],
      description: "accepted for compatibility; not carried to the recipient",
    },
    notification_type: {
      type: "string",
      enum: ["REGULAR", "NO_PUSH"],
      description: "REGULAR (default) wakes the recipient (urgent); NO_PUSH does not",
    },
    sender_action: { type: "string", enum: ["typing_on", "typing_off"] },
    server_receipt: {
      type: "boolean",
      description:
        "true (default): when a recipient device acknowledges the message, the sending device gets a " +
        'StreamDeliveryEvent ({"type":"delivery"}); false: it gets none (for clients that send their own ' +
        "end-to-end delivery receipts)",
    },
    message: {
      type: "object",
      required: ["ciphertexts"],
      properties: {
        ...messageOptions,
        ciphertexts: { type: "array", minItems: 1, maxItems: 100, items: ciphertextSchema },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
} as const;

/** The body of POST /v1/groups/{id}/messages. */
export const sendGroupMessageBody = {
  type: "object",
  required: ["message"],
  properties: {
    notification_type: { type: "string", enum: ["REGULAR", "NO_PUSH"] },
    sender_action: { type: "string", enum: ["typing_on", "typing_off"] },
    message: {
      type: "object",
      required: ["body"],
      properties: { ...messageOptions, body: b64(MAX_CIPHERTEXT_B64, "sender-key ciphertext") },
      additionalProperties: false,
    },
    expected_recipients: {
      type: "array",
      maxItems: 1000,
      items: {
        type: "object",
        required: ["user", "devices"],
        properties: {
          user: { $ref: "Recipient#" },
          devices: {
            type: "array",
            maxItems: 100,
            items: {
              type: "object",
              required: ["device_id", "registration_id"],
              properties: {
                device_id: { type: "integer", minimum: 1 },
                registration_id: { type: "integer", minimum: 0, maximum: 16380 },
              },
              additionalProperties: false,
            },
          },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
} as const;

const SendFrameSchema = {
  $id: "StreamSendFrame",
  ...sendMessageBody,
  description:
    "WebSocket client → server: a one-to-one send on the live socket, the body of POST /v1/me/messages with " +
    '"type":"send" and a "ref". Frames are submitted in the order they arrive (one device\'s messages keep their ' +
    "order); each is answered with a StreamSendResult, in the order the sends complete.",
  required: ["type", "ref", ...sendMessageBody.required],
  properties: { type: { const: "send" }, ref: sendRef, ...sendMessageBody.properties },
} as const;

const SendGroupFrameSchema = {
  $id: "StreamSendGroupFrame",
  ...sendGroupMessageBody,
  description:
    "WebSocket client → server: a group send on the live socket, the body of POST /v1/groups/{id}/messages with " +
    '"type":"send_group", a "ref" and the "group_id".',
  required: ["type", "ref", "group_id", ...sendGroupMessageBody.required],
  properties: {
    type: { const: "send_group" },
    ref: sendRef,
    group_id: { ...uuid, description: "the group thread" },
    ...sendGroupMessageBody.properties,
  },
} as const;

const SendResultSchema = {
  $id: "StreamSendResult",
  type: "object",
  description:
    'WebSocket server → client: the outcome of the send frame with this ref: "result" holds what the REST call ' +
    'answers with 200, "problem" the problem document it would answer otherwise (its status and reason: 409 ' +
    "DEVICES_CHANGED, 404 RECIPIENT_NOT_FOUND, 403 NOT_A_MEMBER, 400 INVALID_REQUEST, 429 TOO_MANY_PENDING_SENDS, " +
    "503 ...). A send whose result never arrived (the socket closed) may or may not have been stored: retry it " +
    "with the same mid.",
  required: ["type", "ref"],
  properties: {
    type: { const: "send_result" },
    ref: { type: "string" },
    result: {
      type: "object",
      properties: {
        recipient_id: { ...uuid, description: "one-to-one: the recipient's account_id" },
        group_id: { ...uuid, description: "group: the group thread" },
        ...sendOutcomeFields,
      },
    },
    problem: { $ref: "Problem#" },
  },
} as const;

/** Every shared schema, in dependency order. */
export const SHARED_SCHEMAS = [
  UserSchema,
  RecipientSchema,
  DeviceSchema,
  ProfileSchema,
  GroupSchema,
  PreKeySchema,
  SignedPreKeySchema,
  BundleSchema,
  ProblemSchema,
  MessageEventSchema,
  DeliveryEventSchema,
  ControlEventSchema,
  ClientFrameSchema,
  SendFrameSchema,
  SendGroupFrameSchema,
  SendResultSchema,
];

/** Problem responses for the given statuses, for route schemas. */
export function problems(...statuses: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {};
  for (const s of statuses) {
    out[s] = {
      description: "problem details",
      content: { "application/problem+json": { schema: { $ref: "Problem#" } } },
    };
  }
  return out;
}

export {
  MAX_CIPHERTEXT_B64,
  deviceId as deviceIdSchema,
  registrationId as registrationIdSchema,
  uuid as uuidSchema,
};
