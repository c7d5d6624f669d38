import { create, equals } from "@bufbuild/protobuf";
import {
  App,
  EnvelopeSchema,
  EnvelopeType,
  SendGroupMessageRequestSchema,
  SendMessageRequestSchema,
  UploadKeysRequestSchema,
  type Envelope,
} from "@switchboard/proto";
import { messengerEventToEnvelope } from "@switchboard/sdk";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  envelopeToEvent,
  eventToEnvelope,
  groupSendFromJson,
  groupSendToJson,
  sendFromJson,
  sendToJson,
  uploadKeysFromJson,
  uploadKeysToJson,
  type EnvelopeEvent,
  type SendGroupMessageJson,
  type SendMessageJson,
} from "./translate.js";
import {
  handleOfUser,
  recipientFromJson,
  recipientFromPath,
  recipientToPath,
  userFromHandle,
  type HandleRef,
  type Recipient,
} from "./users.js";

const MAX_SAFE = 2n ** 53n - 1n;
const uuid = fc.uuid();
const bytes = (maxLength = 64) => fc.uint8Array({ maxLength });
const nonEmptyBytes = (maxLength = 64) => fc.uint8Array({ minLength: 1, maxLength });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const deviceId = fc.integer({ min: 1, max: 100 });
const timestamp = fc.bigInt({ min: -MAX_SAFE, max: MAX_SAFE });
const position = fc.bigInt({ min: 0n, max: MAX_SAFE });
const mid = fc.string({ maxLength: 64 });

const handle: fc.Arbitrary<HandleRef> = fc.oneof(
  fc.bigInt({ min: 100000n, max: 10n ** 19n }).map((n) => ({
    app: App.MESSENGER,
    providerId: "",
    value: n.toString(),
  })),
  fc.stringMatching(/^\+[1-9][0-9]{6,14}$/).map((value) => ({ app: App.WHATSAPP, providerId: "", value })),
  fc.stringMatching(/^[a-z0-9_]{1,30}$/).map((value) => ({ app: App.INSTAGRAM, providerId: "", value })),
  fc
    .tuple(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,31}$/), fc.stringMatching(/^[a-z0-9._@+-]{1,64}$/))
    .map(([providerId, value]) => ({ app: App.THIRD_PARTY, providerId, value })),
);

const destination = {
  address: { accountId: "0b6f3c52-3a4e-4a43-9a55-0c7e0b1e9d10", deviceId: 2 },
  app: App.MESSENGER,
};

/** Envelope members every kind shares; the destination is the device the event is delivered to. */
const common = fc.record({
  id: uuid,
  destination: fc.constant(destination.address),
  destinationApp: fc.constant(destination.app),
  serverTimestampMs: position,
  clientTimestampMs: timestamp,
  ephemeral: fc.boolean(),
  urgent: fc.boolean(),
  forwarded: fc.boolean(),
  reportTag: bytes(64),
  sequence: position,
});

/** A message envelope: identified (source, app and handle agree) or sealed (no source at all). */
const messageEnvelope: fc.Arbitrary<{ envelope: Envelope; handle?: HandleRef }> = fc
  .record({
    common,
    sender: fc.option(fc.record({ accountId: uuid, deviceId, handle }), { nil: undefined }),
    registrationId: u32,
    type: fc.constantFrom(
      EnvelopeType.CIPHERTEXT,
      EnvelopeType.PREKEY_MESSAGE,
      EnvelopeType.SEALED_SENDER,
      EnvelopeType.SENDER_KEY_MESSAGE,
      EnvelopeType.PLAINTEXT_CONTENT,
      42 as EnvelopeType,
    ),
    clientMessageId: mid,
    content: bytes(512),
    groupId: fc.option(uuid, { nil: "" }),
  })
  .map(({ common: c, sender, registrationId, ...rest }) => ({
    envelope: create(EnvelopeSchema, {
      ...c,
      ...rest,
      source: sender && { accountId: sender.accountId, deviceId: sender.deviceId },
      sourceApp: sender?.handle.app ?? App.UNSPECIFIED,
      sourceProviderId: sender?.handle.providerId ?? "",
      sourceRegistrationId: registrationId,
    }),
    handle: sender?.handle,
  }));

/** A server delivery receipt as the delivery service queues one (no provider id, no content). */
const receiptEnvelope: fc.Arbitrary<{ envelope: Envelope; handle?: HandleRef }> = fc
  .record({ common, accountId: uuid, deviceId, handle, clientMessageId: mid, content: bytes(8) })
  .map(({ common: c, accountId, deviceId: d, handle: h, clientMessageId, content }) => ({
    envelope: create(EnvelopeSchema, {
      ...c,
      type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
      source: { accountId, deviceId: d },
      sourceApp: h.app,
      sourceProviderId: "",
      clientMessageId,
      content,
    }),
    handle: h,
  }));

const anyEnvelope = fc.oneof(messageEnvelope, receiptEnvelope);

/** JSON over the wire: what a client actually receives. */
const viaJson = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe("envelopeToEvent / eventToEnvelope", () => {
  test("an envelope survives envelope → event → envelope", () => {
    fc.assert(
      fc.property(anyEnvelope, ({ envelope, handle: h }) => {
        const back = eventToEnvelope(viaJson(envelopeToEvent(envelope, h)), destination);
        expect(equals(EnvelopeSchema, back, envelope)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  test("an event survives event → envelope → event", () => {
    fc.assert(
      fc.property(anyEnvelope, ({ envelope, handle: h }) => {
        const event: EnvelopeEvent = viaJson(envelopeToEvent(envelope, h));
        expect(envelopeToEvent(eventToEnvelope(event, destination), h)).toEqual(event);
      }),
      { numRuns: 500 },
    );
  });

  test("the SDK's MessengerTransport reads every event back to the same envelope", () => {
    fc.assert(
      fc.property(anyEnvelope, ({ envelope, handle: h }) => {
        const back = messengerEventToEnvelope(viaJson(envelopeToEvent(envelope, h)), destination.address);
        expect(equals(EnvelopeSchema, back, envelope)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  test("a sender the directory does not know keeps its account id and app", () => {
    fc.assert(
      fc.property(messageEnvelope, ({ envelope }) => {
        const back = eventToEnvelope(envelopeToEvent(envelope), destination);
        expect(equals(EnvelopeSchema, back, envelope)).toBe(true);
      }),
    );
  });

  test("renders the sender in the native form of its app", () => {
    const envelope = create(EnvelopeSchema, {
      id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11",
      type: EnvelopeType.PREKEY_MESSAGE,
      source: { accountId: "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01", deviceId: 3 },
      sourceApp: App.WHATSAPP,
      clientMessageId: "m-1",
      content: new Uint8Array([1, 2, 3]),
      serverTimestampMs: 1700000000123n,
      clientTimestampMs: 1700000000000n,
      urgent: true,
      sequence: 7n,
    });
    expect(envelopeToEvent(envelope, { app: App.WHATSAPP, providerId: "", value: "+15551234567" })).toEqual({
      type: "message",
      server_id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11",
      seq: 7,
      server_timestamp: 1700000000123,
      sender: { account_id: "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01", app: "whatsapp", phone: "+15551234567" },
      sender_device: 3,
      urgent: true,
      mid: "m-1",
      kind: "prekey",
      body: "AQID",
      timestamp: 1700000000000,
    });
  });

  test("renders a server delivery receipt as a delivery event", () => {
    const envelope = create(EnvelopeSchema, {
      id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11",
      type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
      source: { accountId: "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01", deviceId: 1 },
      sourceApp: App.MESSENGER,
      clientMessageId: "m-1",
      clientTimestampMs: 1700000000000n,
      serverTimestampMs: 1700000000500n,
      sequence: 8n,
    });
    expect(envelopeToEvent(envelope, { app: App.MESSENGER, providerId: "", value: "100004" })).toMatchObject({
      type: "delivery",
      sender: { app: "messenger", id: "100004" },
      delivery: { mids: ["m-1"], watermark: 1700000000000 },
    });
  });
});

const b64 = (maxLength = 64) => nonEmptyBytes(maxLength).map((b) => Buffer.from(b).toString("base64"));
const options = fc.record(
  {
    mid: fc.string({ minLength: 1, maxLength: 64 }),
    timestamp: timestamp.map(Number),
    forwarded: fc.constant(true as const),
    report_tag: b64(32),
    ephemeral: fc.constant(true as const),
  },
  { requiredKeys: ["mid", "timestamp"] },
);
const notification = fc.constantFrom("REGULAR" as const, "NO_PUSH" as const);
const sender = { accountId: "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01", deviceId: 1 };
const defaults = { mid: "unused", timestampMs: 0 };

/** Canonical one-to-one send bodies: recipient by account id, notification type explicit. */
const sendJson: fc.Arbitrary<SendMessageJson> = fc
  .record({
    accountId: uuid,
    notification,
    serverReceipt: fc.boolean(),
    options,
    ciphertexts: fc.array(
      fc.record({
        device_id: deviceId,
        registration_id: u32,
        type: fc.constantFrom("ciphertext", "prekey", "sealed_sender", "plaintext"),
        body: b64(300),
      }),
      { minLength: 1, maxLength: 6 },
    ),
  })
  .map(({ accountId, notification: n, serverReceipt, options: o, ciphertexts }) => ({
    recipient: { account_id: accountId },
    notification_type: n,
    ...(serverReceipt ? {} : { server_receipt: false }),
    message: { ...o, ciphertexts },
  }));

const groupJson: fc.Arbitrary<SendGroupMessageJson> = fc
  .record({
    notification,
    options,
    body: b64(300),
    expected: fc.option(
      fc.array(
        fc.record({
          user: uuid.map((account_id) => ({ account_id })),
          devices: fc.array(fc.record({ device_id: deviceId, registration_id: u32 }), { maxLength: 4 }),
        }),
        { minLength: 1, maxLength: 5 },
      ),
      { nil: undefined },
    ),
  })
  .map(({ notification: n, options: o, body, expected }) => ({
    notification_type: n,
    message: { ...o, body },
    ...(expected === undefined ? {} : { expected_recipients: expected }),
  }));

describe("sendFromJson / sendToJson", () => {
  test("a send survives JSON → SendMessageRequest → JSON", () => {
    fc.assert(
      fc.property(sendJson, (body) => {
        const req = sendFromJson(viaJson(body), {
          sender,
          defaults,
          destinationAccountId: body.recipient.account_id ?? "",
        });
        expect(sendToJson(req)).toEqual(body);
      }),
      { numRuns: 300 },
    );
  });

  test("a request survives SendMessageRequest → JSON → SendMessageRequest", () => {
    fc.assert(
      fc.property(sendJson, (body) => {
        const req = sendFromJson(body, {
          sender,
          defaults,
          destinationAccountId: body.recipient.account_id ?? "",
        });
        const again = sendFromJson(viaJson(sendToJson(req)), {
          sender,
          defaults,
          destinationAccountId: req.destinationAccountId,
        });
        expect(equals(SendMessageRequestSchema, again, req)).toBe(true);
      }),
    );
  });

  test("server_receipt: false asks for no delivery receipt; true or absent keeps the default", () => {
    const body = (extra: { server_receipt?: boolean }): SendMessageJson => ({
      recipient: { account_id: sender.accountId },
      ...extra,
      message: { ciphertexts: [{ device_id: 1, registration_id: 5, type: "ciphertext", body: "AQ==" }] },
    });
    const ctx = { sender, defaults, destinationAccountId: "x" };
    const off = sendFromJson(body({ server_receipt: false }), ctx);
    expect(off.noDeliveryReceipt).toBe(true);
    expect(sendToJson(off).server_receipt).toBe(false);
    for (const on of [sendFromJson(body({ server_receipt: true }), ctx), sendFromJson(body({}), ctx)]) {
      expect(on.noDeliveryReceipt).toBe(false);
      expect(sendToJson(on)).not.toHaveProperty("server_receipt");
    }
  });

  test("a sender action makes the message ephemeral; defaults fill mid and timestamp", () => {
    const req = sendFromJson(
      {
        recipient: { id: "100004" },
        sender_action: "typing_on",
        message: { ciphertexts: [{ device_id: 1, registration_id: 5, type: "ciphertext", body: "AQ==" }] },
      },
      { sender, defaults: { mid: "generated", timestampMs: 1234 }, destinationAccountId: "x" },
    );
    expect(req).toMatchObject({
      ephemeral: true,
      urgent: true,
      clientMessageId: "generated",
      clientTimestampMs: 1234n,
    });
  });
});

describe("groupSendFromJson / groupSendToJson", () => {
  test("a group send survives JSON → SendGroupMessageRequest → JSON", () => {
    fc.assert(
      fc.property(groupJson, (body) => {
        const req = groupSendFromJson(viaJson(body), {
          sender,
          defaults,
          groupId: "g",
          expectedAccountIds: (body.expected_recipients ?? []).map((r) => r.user.account_id ?? ""),
        });
        expect(groupSendToJson(req)).toEqual(body);
        const again = groupSendFromJson(groupSendToJson(req), {
          sender,
          defaults,
          groupId: "g",
          expectedAccountIds: req.expectedRecipients.map((r) => r.accountId),
        });
        expect(equals(SendGroupMessageRequestSchema, again, req)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("uploadKeysFromJson / uploadKeysToJson", () => {
  const signed = fc.record({ key_id: u32, public_key: b64(40), signature: b64(64) });
  test("a key upload survives JSON → UploadKeysRequest → JSON", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            identity_key: b64(33),
            signed_pre_key: signed,
            one_time_pre_keys: fc.array(fc.record({ key_id: u32, public_key: b64(33) }), {
              minLength: 1,
              maxLength: 5,
            }),
            kyber_pre_keys: fc.array(signed, { minLength: 1, maxLength: 3 }),
            last_resort_kyber_pre_key: signed,
          },
          { requiredKeys: [] },
        ),
        (json) => {
          const req = uploadKeysFromJson(viaJson(json), sender);
          expect(uploadKeysToJson(req)).toEqual(json);
          expect(
            equals(UploadKeysRequestSchema, uploadKeysFromJson(uploadKeysToJson(req), sender), req),
          ).toBe(true);
        },
      ),
    );
  });
});

describe("recipients", () => {
  const recipient: fc.Arbitrary<Recipient> = fc.oneof(
    uuid.map((accountId) => ({ kind: "account" as const, accountId })),
    handle.map((h) => ({ kind: "handle" as const, handle: h })),
  );

  test("a recipient survives recipient → path → recipient", () => {
    fc.assert(
      fc.property(recipient, (r) => {
        expect(recipientFromPath(recipientToPath(r))).toEqual(r);
      }),
    );
  });

  test("a rendered user names the same handle", () => {
    fc.assert(
      fc.property(uuid, handle, (accountId, h) => {
        const user = userFromHandle(accountId, h);
        expect(handleOfUser(user)).toEqual(h);
        const { account_id: _, ...withoutId } = user;
        expect(recipientFromJson(withoutId)).toEqual({ kind: "handle", handle: h });
        expect(recipientFromJson(user)).toEqual({ kind: "account", accountId });
      }),
    );
  });

  test("parses each app's recipient form", () => {
    expect(recipientFromJson({ id: "100004" })).toEqual({
      kind: "handle",
      handle: { app: App.MESSENGER, providerId: "", value: "100004" },
    });
    expect(recipientFromJson({ app: "whatsapp", phone: "+15551234567" })).toMatchObject({
      handle: { app: App.WHATSAPP, value: "+15551234567" },
    });
    expect(recipientFromJson({ app: "instagram", username: "ada.l" })).toMatchObject({
      handle: { app: App.INSTAGRAM, value: "ada.l" },
    });
    expect(recipientFromJson({ app: "provider:acme", handle: "alice" })).toMatchObject({
      handle: { app: App.THIRD_PARTY, providerId: "acme", value: "alice" },
    });
    expect(recipientFromPath("provider:acme:alice")).toMatchObject({
      handle: { app: App.THIRD_PARTY, providerId: "acme", value: "alice" },
    });
  });

  test("rejects mixed or incomplete recipients with INVALID_RECIPIENT", () => {
    for (const bad of [
      {},
      { app: "whatsapp", id: "1" },
      { id: "abc" },
      { app: "nope", handle: "x" },
      { id: "1", phone: "+1" },
    ]) {
      expect(() => recipientFromJson(bad)).toThrow(expect.objectContaining({ reason: "INVALID_RECIPIENT" }));
    }
    expect(() => recipientFromPath("ada.l")).toThrow(
      expect.objectContaining({ reason: "INVALID_RECIPIENT" }),
    );
  });
});
