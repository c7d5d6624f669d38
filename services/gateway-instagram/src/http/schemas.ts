// Shared JSON schemas: request validation, response serialization and the OpenAPI components.
import { problemSchema } from "./problem.js";

const base64 = {
  type: "string",
  pattern: "^[A-Za-z0-9+/]*={0,2}$",
  contentEncoding: "base64",
} as const;
const uuid = {
  type: "string",
  pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
} as const;
const deviceId = { type: "integer", minimum: 1, maximum: 1000 } as const;
const registrationId = { type: "integer", minimum: 1, maximum: 16380 } as const;
const millis = { type: "integer", minimum: 0, description: "Milliseconds since the Unix epoch." } as const;
const appName = {
  type: "string",
  enum: ["instagram", "whatsapp", "messenger", "third_party", "unspecified"],
} as const;

/** A user ref in any app's form. */
export const userRefSchema = {
  type: "string",
  minLength: 1,
  maxLength: 100,
  description:
    "A user of any app: `ada.l` (Instagram username), `whatsapp:+15551234567`, `messenger:100004`, " +
    "`acme:alice` (third-party provider acme), or an account id (UUID).",
} as const;

const device = {
  $id: "Device",
  type: "object",
  properties: {
    device_id: deviceId,
    registration_id: { type: "integer" },
    name: { type: "string" },
    created_at_ms: millis,
  },
  required: ["device_id", "registration_id", "name", "created_at_ms"],
} as const;

const user = {
  $id: "User",
  type: "object",
  description: "A user of any app with their current devices.",
  properties: {
    account_id: uuid,
    ref: { type: "string", description: "How this API names the user (see User refs)." },
    app: appName,
    handle: { type: "string", description: "The app-native handle (username, E.164 number, numeric id)." },
    provider_id: { type: "string", description: "Third-party provider id (third_party only)." },
    created_at_ms: millis,
    devices: { type: "array", items: { $ref: "Device#" } },
  },
  required: ["account_id", "ref", "app", "handle", "created_at_ms", "devices"],
} as const;

const threadUser = {
  $id: "ThreadUser",
  type: "object",
  properties: {
    account_id: uuid,
    ref: { type: "string" },
    app: appName,
    devices: {
      type: "array",
      items: {
        type: "object",
        properties: { device_id: deviceId, registration_id: { type: "integer" } },
        required: ["device_id", "registration_id"],
      },
    },
  },
  required: ["account_id", "app", "devices"],
} as const;

const thread = {
  $id: "Thread",
  type: "object",
  description:
    "A direct thread. One-to-one (`private`) thread ids are derived from the two account ids; a " +
    "group thread's id is its group id (UUID).",
  properties: {
    thread_id: { type: "string" },
    thread_type: { type: "string", enum: ["private", "group"] },
    users: {
      type: "array",
      description:
        "The other user of a private thread (yourself for a thread with yourself); every member of a group.",
      items: { $ref: "ThreadUser#" },
    },
    creator_account_id: uuid,
    revision: { type: "integer", description: "Group membership revision." },
    pending: {
      type: "boolean",
      description: "True while the thread is a message request awaiting your answer.",
    },
  },
  required: ["thread_id", "thread_type", "users", "pending"],
} as const;

const sender = {
  $id: "ItemSender",
  type: ["object", "null"],
  description: "The sending device (for receipts: the device that acknowledged); null for sealed sender.",
  properties: {
    account_id: uuid,
    device_id: { type: "integer" },
    registration_id: { type: "integer" },
    app: appName,
    provider_id: { type: "string" },
    ref: { type: "string" },
  },
  required: ["account_id", "device_id", "registration_id", "app"],
} as const;

const threadItem = {
  $id: "ThreadItem",
  type: "object",
  description:
    "The data of an `item` or `receipt` event on /v1/direct/events: one envelope as delivered to your device. " +
    "Acknowledge it by server_id with POST /v1/direct/ack.",
  properties: {
    server_id: uuid,
    thread_id: { type: ["string", "null"] },
    thread_type: { type: "string", enum: ["private", "group"] },
    client_context: { type: "string" },
    item_type: { type: "string", enum: ["message", "typing"] },
    kind: {
      type: "string",
      enum: [
        "ciphertext",
        "prekey",
        "sealed_sender",
        "sender_key",
        "plaintext",
        "delivery_receipt",
        "unspecified",
      ],
    },
    sender: { $ref: "ItemSender#" },
    recipient: {
      type: "object",
      properties: { account_id: uuid, device_id: { type: "integer" } },
      required: ["account_id", "device_id"],
    },
    body: base64,
    report_tag: base64,
    server_franking_tag: base64,
    forwarded: { type: "boolean" },
    urgent: { type: "boolean" },
    client_timestamp_ms: millis,
    server_timestamp_ms: millis,
    seq: { type: "integer" },
  },
  required: [
    "server_id",
    "thread_id",
    "thread_type",
    "client_context",
    "item_type",
    "kind",
    "sender",
    "recipient",
    "body",
    "forwarded",
    "urgent",
    "client_timestamp_ms",
    "server_timestamp_ms",
    "seq",
  ],
} as const;

const signedPreKey = {
  $id: "SignedPreKey",
  type: "object",
  properties: { key_id: { type: "integer", minimum: 0 }, public_key: base64, signature: base64 },
  required: ["key_id", "public_key", "signature"],
} as const;

const ecPreKey = {
  $id: "EcPreKey",
  type: "object",
  properties: { key_id: { type: "integer", minimum: 0 }, public_key: base64 },
  required: ["key_id", "public_key"],
} as const;

const preKeyBundle = {
  $id: "PreKeyBundle",
  type: "object",
  properties: {
    device_id: { type: "integer" },
    registration_id: { type: "integer" },
    identity_key: base64,
    signed_pre_key: { $ref: "SignedPreKey#" },
    one_time_pre_key: { $ref: "EcPreKey#" },
    kyber_pre_key: { $ref: "SignedPreKey#" },
    kyber_pre_key_is_last_resort: { type: "boolean" },
  },
  required: ["device_id", "registration_id", "identity_key", "kyber_pre_key_is_last_resort"],
} as const;

/** The request validator's options: every error of a body in one problem, not just the first. */
export const ajvOptions = { customOptions: { allErrors: true } };

/** Every shared schema, added with `app.addSchema` (they become OpenAPI components). */
export const sharedSchemas = [
  problemSchema,
  device,
  user,
  threadUser,
  thread,
  sender,
  threadItem,
  signedPreKey,
  ecPreKey,
  preKeyBundle,
];

/** Reference to a shared schema. */
export const ref = (id: string) => ({ $ref: `${id}#` }) as const;

/** Error responses every route may produce. */
export const problemResponses = {
  "4xx": ref("Problem"),
  "5xx": ref("Problem"),
} as const;

/** Bearer-token security requirement for OpenAPI. */
export const bearer = [{ bearerAuth: [] }];

export const schemaParts = { base64, uuid, deviceId, registrationId, millis };
