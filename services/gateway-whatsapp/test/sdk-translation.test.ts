// The gateway's translation (src/domain/translate.ts) against the SDK transport's
// (whatsAppTranslation): what one side writes, the other reads back losslessly.
import { create, equals } from "@bufbuild/protobuf";
import {
  AddressSchema,
  App,
  EnvelopeSchema,
  EnvelopeType,
  HandleSchema,
  SendGroupMessageRequestSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  whatsapp,
  type Handle,
} from "@switchboard/proto";
import { sendOutcomeFromProto, whatsAppTranslation as sdk } from "@switchboard/sdk";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { formatGroupJid, formatUserJid, handleKey } from "../src/domain/jid.js";
import {
  envelopeToChatFrame,
  incomingChatToEnvelope,
  outgoingChatToSend,
  sendResponseToAck,
  serverReceiptToEnvelope,
} from "../src/domain/translate.js";
import {
  bytes,
  clientId,
  deviceArb,
  distinctHandles,
  handleArb,
  int64,
  registrationId,
  uint64,
  uuid,
} from "./arbitraries.js";

const ME = create(AddressSchema, { accountId: "7d0f3c1e-5b7a-4a4e-9a5e-0c9f1b2a3c4d", deviceId: 3 });
const typeArb = fc.constantFrom(
  EnvelopeType.CIPHERTEXT,
  EnvelopeType.PREKEY_MESSAGE,
  EnvelopeType.SENDER_KEY_MESSAGE,
  EnvelopeType.SEALED_SENDER,
  EnvelopeType.PLAINTEXT_CONTENT,
);
const senderArb = fc.option(fc.record({ handle: handleArb, device: deviceArb, accountId: uuid }), {
  nil: undefined,
});

/** Every envelope the delivery service can queue for a device (receipts aside). */
const envelopeArb = fc
  .record({
    id: uuid,
    clientMessageId: clientId,
    type: typeArb,
    sender: senderArb,
    sourceRegistrationId: registrationId,
    content: bytes,
    serverTimestampMs: int64,
    clientTimestampMs: int64,
    ephemeral: fc.boolean(),
    urgent: fc.boolean(),
    groupId: fc.option(uuid, { nil: "" }),
    forwarded: fc.boolean(),
    reportTag: bytes,
    sequence: uint64,
  })
  .map(({ sender, ...e }) => ({
    sender,
    envelope: create(EnvelopeSchema, {
      ...e,
      source: sender && { accountId: sender.accountId, deviceId: sender.device },
      sourceApp: sender?.handle.app ?? App.UNSPECIFIED,
      sourceProviderId: sender?.handle.app === App.THIRD_PARTY ? sender.handle.providerId : "",
      destination: ME,
      destinationApp: App.WHATSAPP,
    }),
  }));

describe("gateway → SDK", () => {
  test("an envelope rendered by the gateway reads back as the same envelope in the SDK", () => {
    fc.assert(
      fc.property(envelopeArb, ({ sender, envelope }) => {
        const frame = envelopeToChatFrame(envelope, sender?.handle);
        expect(frame.case).toBe("message");
        const back = sdk.incomingChatToEnvelope(frame.value as whatsapp.IncomingChat, {
          sourceAccountId: sender?.accountId ?? "",
          destination: ME,
        });
        expect(equals(EnvelopeSchema, back, envelope)).toBe(true);
        // The gateway's own inverse agrees.
        const own = incomingChatToEnvelope(frame.value as whatsapp.IncomingChat, {
          sourceAccountId: sender?.accountId ?? "",
          destination: ME,
          destinationApp: App.WHATSAPP,
        });
        expect(equals(EnvelopeSchema, own, envelope)).toBe(true);
      }),
    );
  });

  test("a server receipt reads back with everything ServerReceipt carries", () => {
    const arb = fc.record({
      id: uuid,
      clientMessageId: clientId,
      handle: handleArb,
      device: deviceArb,
      accountId: uuid,
      t: int64,
    });
    fc.assert(
      fc.property(arb, (r) => {
        const receipt = create(whatsapp.ServerReceiptSchema, {
          serverId: r.id,
          id: r.clientMessageId,
          from: formatUserJid(r.handle, r.device),
          t: r.t,
        });
        const ctx = { sourceAccountId: r.accountId, destination: ME };
        const envelope = serverReceiptToEnvelope(receipt, { ...ctx, destinationApp: App.WHATSAPP });
        const frame = envelopeToChatFrame(envelope, r.handle);
        const back = sdk.serverReceiptToEnvelope(frame.value as whatsapp.ServerReceipt, ctx);
        expect(equals(EnvelopeSchema, back, envelope)).toBe(true);
      }),
    );
  });

  test("a SendAck reads back as the delivery service's send outcome", () => {
    const responseArb = fc.oneof(
      fc
        .record({ messageId: uuid, serverTimestampMs: fc.bigInt({ min: 0n, max: 2n ** 52n }) })
        .map((v) => create(SendMessageResponseSchema, { result: { case: "sent", value: v } })),
      fc
        .record({
          missingDevices: fc.uniqueArray(deviceArb, { maxLength: 4 }),
          extraDevices: fc.uniqueArray(deviceArb, { maxLength: 4 }),
        })
        .map((v) => create(SendMessageResponseSchema, { result: { case: "mismatchedDevices", value: v } })),
      fc
        .uniqueArray(deviceArb, { minLength: 1, maxLength: 4 })
        .map((staleDevices) =>
          create(SendMessageResponseSchema, { result: { case: "staleDevices", value: { staleDevices } } }),
        ),
      fc.constant(create(SendMessageResponseSchema, { result: { case: "recipientNotFound", value: {} } })),
    );
    fc.assert(
      fc.property(responseArb, handleArb, uuid, (response, handle, accountId) => {
        const r = response.result;
        if (r.case === "mismatchedDevices") r.value.accountId = accountId;
        if (r.case === "staleDevices") r.value.accountId = accountId;
        const outcome = sdk.sendAckToOutcome(sendResponseToAck("m", response, handle), accountId);
        expect(outcome).toEqual(sendOutcomeFromProto(response));
      }),
    );
  });
});

describe("SDK → gateway", () => {
  /** Accounts with handles, as both sides' directories know them. */
  const accountsArb = distinctHandles(4)
    .filter((hs) => hs.length > 0)
    .chain((hs) =>
      fc.tuple(fc.constant(hs), fc.uniqueArray(uuid, { minLength: hs.length, maxLength: hs.length })),
    );
  const directory = (handles: Handle[], ids: string[]) => {
    const byId = new Map(ids.map((id, i) => [id, handles[i] as Handle]));
    const byKey = new Map(handles.map((h, i) => [handleKey(h), ids[i] ?? ""]));
    return {
      handleOf: (id: string) => byId.get(id) as Handle,
      accountIdOf: (h: Handle) => byKey.get(handleKey(h)) ?? "",
    };
  };
  const common = {
    clientMessageId: clientId,
    clientTimestampMs: int64,
    ephemeral: fc.boolean(),
    urgent: fc.boolean(),
    forwarded: fc.boolean(),
    reportTag: bytes,
  };

  test("a one-to-one send written by the SDK is the same delivery send at the gateway", () => {
    const arb = fc.record({
      ...common,
      noDeliveryReceipt: fc.boolean(),
      accounts: accountsArb,
      messages: fc.uniqueArray(
        fc.record({ deviceId: deviceArb, registrationId, type: typeArb, content: bytes }),
        { maxLength: 6, selector: (m) => m.deviceId },
      ),
    });
    fc.assert(
      fc.property(arb, ({ accounts: [handles, ids], ...rest }) => {
        const dir = directory(handles, ids);
        const request = create(SendMessageRequestSchema, {
          ...rest,
          sender: ME,
          destinationAccountId: ids[0],
        });
        const chat = sdk.sendRequestToOutgoingChat(request, dir.handleOf);
        expect(chat.noServerReceipt).toBe(request.noDeliveryReceipt);
        const plan = outgoingChatToSend(chat, { sender: ME, accountIdOf: dir.accountIdOf });
        expect(plan.kind).toBe("user");
        expect(equals(SendMessageRequestSchema, plan.request as typeof request, request)).toBe(true);
      }),
    );
  });

  test("a one-to-one send without a delivery receipt asks the gateway for no server receipt", () => {
    const handle = create(HandleSchema, { app: App.WHATSAPP, value: "+15551230002" });
    for (const noDeliveryReceipt of [true, false]) {
      const request = create(SendMessageRequestSchema, {
        sender: ME,
        clientMessageId: "m1",
        destinationAccountId: "b",
        messages: [
          { deviceId: 1, registrationId: 7, type: EnvelopeType.CIPHERTEXT, content: new Uint8Array([1]) },
        ],
        noDeliveryReceipt,
      });
      const chat = sdk.sendRequestToOutgoingChat(request, () => handle);
      expect(chat.noServerReceipt).toBe(noDeliveryReceipt);
      const plan = outgoingChatToSend(chat, { sender: ME, accountIdOf: () => "b" });
      expect(plan.kind === "user" && plan.request.noDeliveryReceipt).toBe(noDeliveryReceipt);
    }
  });

  test("a group send written by the SDK is the same delivery send at the gateway", () => {
    const arb = fc.record({
      ...common,
      groupId: uuid,
      content: bytes,
      accounts: accountsArb,
      devices: fc.array(
        fc.uniqueArray(fc.record({ deviceId: deviceArb, registrationId }), {
          minLength: 1,
          maxLength: 3,
          selector: (d) => d.deviceId,
        }),
        { minLength: 4, maxLength: 4 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ accounts: [handles, ids], devices, ...rest }) => {
        const dir = directory(handles, ids);
        const request = create(SendGroupMessageRequestSchema, {
          ...rest,
          sender: ME,
          expectedRecipients: ids.map((accountId, i) => ({ accountId, devices: devices[i] ?? [] })),
        });
        const chat = sdk.groupSendRequestToOutgoingChat(request, dir.handleOf);
        expect(chat.to).toBe(formatGroupJid(rest.groupId));
        const plan = outgoingChatToSend(chat, { sender: ME, accountIdOf: dir.accountIdOf });
        expect(plan.kind).toBe("group");
        expect(equals(SendGroupMessageRequestSchema, plan.request as typeof request, request)).toBe(true);
      }),
    );
  });

  test("JIDs written by either side parse the same on the other", () => {
    fc.assert(
      fc.property(handleArb, fc.option(deviceArb, { nil: undefined }), (handle, device) => {
        const jid = formatUserJid(handle, device);
        expect(sdk.formatUserJid(handle, device)).toBe(jid);
        const parsed = sdk.parseUserJid(jid);
        expect(handleKey(parsed.handle)).toBe(handleKey(handle));
        expect(parsed.device).toBe(device);
      }),
    );
  });
});
