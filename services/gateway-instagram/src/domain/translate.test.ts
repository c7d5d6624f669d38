import { create, equals } from "@bufbuild/protobuf";
import {
  App,
  EnvelopeSchema,
  EnvelopeType,
  SendGroupMessageRequestSchema,
  SendMessageRequestSchema,
} from "@switchboard/proto";
import { envelopeOfItem } from "@switchboard/sdk";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AppName } from "./refs.js";
import { directThreadId } from "./thread-id.js";
import {
  directSendToRequest,
  envelopeToItem,
  groupSendToRequest,
  itemToEnvelope,
  kindOfType,
  requestToDirectSend,
  requestToGroupSend,
  toBase64,
  type ItemKind,
  type NativeDirectSend,
  type NativeGroupSend,
  type NativeItem,
} from "./translate.js";

const safeInt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const deviceId = fc.integer({ min: 1, max: 1000 });
const registrationId = fc.integer({ min: 0, max: 16380 });
const bytes = fc.uint8Array({ maxLength: 64 });
const nonEmptyBytes = fc.uint8Array({ minLength: 1, maxLength: 64 });
const base64 = bytes.map(toBase64);
const clientContext = fc.string({ minLength: 1, maxLength: 64 });
const providerId = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,31}$/);
const knownTypes = [
  EnvelopeType.UNSPECIFIED,
  EnvelopeType.CIPHERTEXT,
  EnvelopeType.PREKEY_MESSAGE,
  EnvelopeType.SERVER_DELIVERY_RECEIPT,
  EnvelopeType.SEALED_SENDER,
  EnvelopeType.SENDER_KEY_MESSAGE,
  EnvelopeType.PLAINTEXT_CONTENT,
];
const apps = [App.UNSPECIFIED, App.WHATSAPP, App.MESSENGER, App.INSTAGRAM, App.THIRD_PARTY];

const sourceArb = fc.option(
  fc.record({ accountId: fc.uuid(), deviceId, app: fc.constantFrom(...apps), registrationId, providerId }),
  { nil: undefined },
);

/** Envelopes as the delivery service hands them to an Instagram device. */
const envelopeArb = fc
  .record({
    id: fc.uuid(),
    clientMessageId: fc.string({ maxLength: 64 }),
    type: fc.constantFrom(...knownTypes),
    source: sourceArb,
    destination: fc.record({ accountId: fc.uuid(), deviceId }),
    content: bytes,
    serverTimestampMs: safeInt,
    clientTimestampMs: safeInt,
    ephemeral: fc.boolean(),
    urgent: fc.boolean(),
    groupId: fc.option(fc.uuid(), { nil: "" }),
    forwarded: fc.boolean(),
    reportTag: bytes,
    sequence: safeInt,
  })
  .map((r) =>
    create(EnvelopeSchema, {
      id: r.id,
      clientMessageId: r.clientMessageId,
      type: r.type,
      source: r.source && { accountId: r.source.accountId, deviceId: r.source.deviceId },
      sourceApp: r.source?.app ?? App.UNSPECIFIED,
      sourceProviderId: r.source?.app === App.THIRD_PARTY ? r.source.providerId : "",
      sourceRegistrationId: r.source?.registrationId ?? 0,
      destination: r.destination,
      destinationApp: App.INSTAGRAM,
      content: r.content,
      serverTimestampMs: BigInt(r.serverTimestampMs),
      clientTimestampMs: BigInt(r.clientTimestampMs),
      ephemeral: r.ephemeral,
      urgent: r.urgent,
      groupId: r.groupId,
      forwarded: r.forwarded,
      reportTag: r.reportTag,
      sequence: BigInt(r.sequence),
    }),
  );

const appNames: AppName[] = ["unspecified", "whatsapp", "messenger", "instagram", "third_party"];
const kinds: ItemKind[] = knownTypes.map(kindOfType);

/** Thread items as a client receives them (thread ids consistent with sender and recipient). */
const itemArb: fc.Arbitrary<NativeItem> = fc
  .record({
    server_id: fc.uuid(),
    group: fc.option(fc.uuid(), { nil: undefined }),
    client_context: fc.string({ maxLength: 64 }),
    typing: fc.boolean(),
    kind: fc.constantFrom(...kinds),
    sender: fc.option(
      fc.record({
        account_id: fc.uuid(),
        device_id: deviceId,
        registration_id: registrationId,
        app: fc.constantFrom(...appNames),
        provider_id: providerId,
        ref: fc.option(fc.stringMatching(/^[a-z0-9._]{1,30}$/), { nil: undefined }),
      }),
      { nil: null },
    ),
    recipient: fc.record({ account_id: fc.uuid(), device_id: deviceId }),
    body: base64,
    report_tag: fc.option(nonEmptyBytes.map(toBase64), { nil: undefined }),
    forwarded: fc.boolean(),
    urgent: fc.boolean(),
    client_timestamp_ms: safeInt,
    server_timestamp_ms: safeInt,
    seq: safeInt,
  })
  .map((r) => {
    const { group, typing, sender: s, report_tag, ...rest } = r;
    let sender: NativeItem["sender"] = null;
    if (s !== null) {
      const { provider_id, ref, ...base } = s;
      sender = { ...base };
      if (s.app === "third_party") sender.provider_id = provider_id;
      if (ref !== undefined) sender.ref = ref;
    }
    const item: NativeItem = {
      ...rest,
      thread_id:
        group ?? (sender === null ? null : directThreadId(sender.account_id, r.recipient.account_id)),
      thread_type: group === undefined ? "private" : "group",
      item_type: typing ? "typing" : "message",
      sender,
    };
    if (report_tag !== undefined) item.report_tag = report_tag;
    return item;
  });

const commonArb = fc.record({
  client_context: clientContext,
  item_type: fc.constantFrom("message" as const, "typing" as const),
  client_timestamp_ms: safeInt,
  urgent: fc.boolean(),
  forwarded: fc.boolean(),
  report_tag: fc.option(nonEmptyBytes.map(toBase64), { nil: undefined }),
});

const withoutUndefined = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

const directSendArb: fc.Arbitrary<NativeDirectSend> = fc
  .record({
    common: commonArb,
    ciphertexts: fc.array(
      fc.record({
        device_id: deviceId,
        registration_id: registrationId,
        type: fc.constantFrom(
          "ciphertext" as const,
          "prekey" as const,
          "sealed_sender" as const,
          "plaintext" as const,
        ),
        body: nonEmptyBytes.map(toBase64),
      }),
      { maxLength: 6 },
    ),
    server_receipt: fc.boolean(),
  })
  .map((r) =>
    withoutUndefined({ ...r.common, ciphertexts: r.ciphertexts, server_receipt: r.server_receipt }),
  );

const groupSendArb: fc.Arbitrary<NativeGroupSend> = fc
  .record({
    common: commonArb,
    body: nonEmptyBytes.map(toBase64),
    expected: fc.option(
      fc.array(
        fc.record({
          account_id: fc.uuid(),
          devices: fc.array(fc.record({ device_id: deviceId, registration_id: registrationId }), {
            minLength: 1,
            maxLength: 3,
          }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      { nil: undefined },
    ),
  })
  .map((r) => withoutUndefined({ ...r.common, body: r.body, expected_recipients: r.expected }));

describe("translate", () => {
  it("round-trips every envelope delivered to an Instagram device through a thread item", () => {
    fc.assert(
      fc.property(envelopeArb, (envelope) => {
        const back = itemToEnvelope(envelopeToItem(envelope));
        expect(equals(EnvelopeSchema, back, envelope)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips thread items through the envelope (native → Envelope → native)", () => {
    fc.assert(
      fc.property(itemArb, (item) => {
        const envelope = itemToEnvelope(item);
        const refOf = (id: string) => (id === item.sender?.account_id ? item.sender.ref : undefined);
        expect(envelopeToItem(envelope, refOf)).toEqual(item);
      }),
      { numRuns: 500 },
    );
  });

  it("agrees with the SDK's InstagramTransport on the envelope of every item", () => {
    fc.assert(
      fc.property(itemArb, (item) => {
        expect(equals(EnvelopeSchema, envelopeOfItem(item), itemToEnvelope(item))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips one-to-one sends through SendMessageRequest", () => {
    fc.assert(
      fc.property(directSendArb, fc.uuid(), deviceId, fc.uuid(), (item, senderId, senderDevice, peer) => {
        const sender = { accountId: senderId, deviceId: senderDevice };
        const req = create(SendMessageRequestSchema, directSendToRequest(item, sender, peer));
        expect(req.sender).toMatchObject(sender);
        expect(req.destinationAccountId).toBe(peer);
        expect(requestToDirectSend(req)).toEqual(item);
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips group sends through SendGroupMessageRequest", () => {
    fc.assert(
      fc.property(groupSendArb, fc.uuid(), deviceId, fc.uuid(), (item, senderId, senderDevice, group) => {
        const sender = { accountId: senderId, deviceId: senderDevice };
        const req = create(SendGroupMessageRequestSchema, groupSendToRequest(item, sender, group));
        expect(req.groupId).toBe(group);
        expect(req.sender).toMatchObject(sender);
        expect(requestToGroupSend(req)).toEqual(item);
      }),
      { numRuns: 300 },
    );
  });

  it("asks for no delivery receipt only when a one-to-one send has server_receipt: false", () => {
    const send = (server_receipt?: boolean): NativeDirectSend => ({
      client_context: "c-1",
      item_type: "message",
      client_timestamp_ms: 1,
      urgent: true,
      forwarded: false,
      ciphertexts: [{ device_id: 1, registration_id: 7, type: "ciphertext", body: "AQ==" }],
      ...(server_receipt === undefined ? {} : { server_receipt }),
    });
    const sender = { accountId: "00000000-0000-4000-8000-000000000001", deviceId: 1 };
    const peer = "00000000-0000-4000-8000-000000000002";
    const noReceipt = (s: NativeDirectSend) =>
      create(SendMessageRequestSchema, directSendToRequest(s, sender, peer)).noDeliveryReceipt;
    expect(noReceipt(send(false))).toBe(true);
    expect(noReceipt(send(true))).toBe(false);
    // Absent (as in sealed sends): the default, receipts on.
    expect(noReceipt(send())).toBe(false);
  });

  it("names a one-to-one item's thread by sender and recipient, the same from both sides", () => {
    const a = "00000000-0000-4000-8000-000000000001";
    const b = "00000000-0000-4000-8000-000000000002";
    const envelope = create(EnvelopeSchema, {
      id: "00000000-0000-4000-8000-0000000000ff",
      type: EnvelopeType.CIPHERTEXT,
      source: { accountId: a, deviceId: 1 },
      sourceApp: App.WHATSAPP,
      destination: { accountId: b, deviceId: 2 },
      destinationApp: App.INSTAGRAM,
    });
    const item = envelopeToItem(envelope, () => "whatsapp:+15551234567");
    expect(item.thread_id).toBe(directThreadId(b, a));
    expect(item.thread_type).toBe("private");
    expect(item.sender).toMatchObject({ app: "whatsapp", ref: "whatsapp:+15551234567" });
  });
});
