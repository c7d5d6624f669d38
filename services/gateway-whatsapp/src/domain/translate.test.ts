import { create, equals } from "@bufbuild/protobuf";
import {
  AddressSchema,
  App,
  EnvelopeSchema,
  EnvelopeType,
  HandleSchema,
  SendGroupMessageRequestSchema,
  SendGroupMessageResponseSchema,
  SendMessageResponseSchema,
  whatsapp,
  type Handle,
  type SendGroupMessageRequest,
} from "@switchboard/proto";
import { AppError, Code } from "@switchboard/errors";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  bytes,
  clientId,
  deviceArb,
  distinctHandles,
  handleArb,
  int64,
  kindArb,
  registrationId,
  uint64,
  uuid,
} from "../../test/arbitraries.js";
import { formatGroupJid, formatUserJid, handleKey } from "./jid.js";
import {
  envelopeToChatFrame,
  chatErrorOf,
  groupSendResponseToAck,
  incomingChatToEnvelope,
  outgoingChatToSend,
  sendResponseToAck,
  sendToOutgoingChat,
  serverReceiptToEnvelope,
} from "./translate.js";

const ME = create(AddressSchema, { accountId: "7d0f3c1e-5b7a-4a4e-9a5e-0c9f1b2a3c4d", deviceId: 2 });

/** A sender: its handle, device and account id. */
const senderArb = fc.record({ handle: handleArb, device: deviceArb, accountId: uuid });

const incomingArb = fc
  .record({
    serverId: uuid,
    id: clientId,
    sender: fc.option(senderArb, { nil: undefined }),
    group: fc.option(uuid, { nil: undefined }),
    kind: kindArb,
    ciphertext: bytes,
    t: int64,
    serverT: int64,
    ephemeral: fc.boolean(),
    forwarded: fc.boolean(),
    reportTag: bytes,
    urgent: fc.boolean(),
    senderRegistrationId: registrationId,
    sequence: uint64,
  })
  .map(({ sender, group, ...rest }) => ({
    sender,
    msg: create(whatsapp.IncomingChatSchema, {
      ...rest,
      from: sender ? formatUserJid(sender.handle, sender.device) : "",
      group: group ? formatGroupJid(group) : "",
      thirdPartyProvider: sender?.handle.app === App.THIRD_PARTY ? sender.handle.providerId : "",
    }),
  }));

const ctxFor = (sender: { accountId: string } | undefined) => ({
  sourceAccountId: sender?.accountId ?? "",
  destination: ME,
  destinationApp: App.WHATSAPP,
});

describe("envelopeToChatFrame", () => {
  test("round-trips IncomingChat → Envelope → IncomingChat", () => {
    fc.assert(
      fc.property(incomingArb, ({ sender, msg }) => {
        const envelope = incomingChatToEnvelope(msg, ctxFor(sender));
        const back = envelopeToChatFrame(envelope, sender?.handle);
        expect(back.case).toBe("message");
        expect(equals(whatsapp.IncomingChatSchema, back.value as whatsapp.IncomingChat, msg)).toBe(true);
      }),
    );
  });

  test("round-trips Envelope → IncomingChat → Envelope (every field the envelope carries)", () => {
    fc.assert(
      fc.property(incomingArb, ({ sender, msg }) => {
        // Envelopes built from arbitrary frames cover every envelope field but the destination,
        // which the stream (the device) stands for.
        const envelope = incomingChatToEnvelope(msg, ctxFor(sender));
        const frame = envelopeToChatFrame(envelope, sender?.handle);
        const again = incomingChatToEnvelope(frame.value as whatsapp.IncomingChat, ctxFor(sender));
        expect(equals(EnvelopeSchema, again, envelope)).toBe(true);
        expect(envelope.type).not.toBe(EnvelopeType.SERVER_DELIVERY_RECEIPT);
        expect(envelope.source?.accountId ?? "").toBe(sender?.accountId ?? "");
      }),
    );
  });

  test("round-trips ServerReceipt → Envelope → ServerReceipt", () => {
    const receiptArb = fc.record({ serverId: uuid, id: clientId, sender: senderArb, t: int64 });
    fc.assert(
      fc.property(receiptArb, ({ sender, ...r }) => {
        const receipt = create(whatsapp.ServerReceiptSchema, {
          ...r,
          from: formatUserJid(sender.handle, sender.device),
        });
        const envelope = serverReceiptToEnvelope(receipt, ctxFor(sender));
        expect(envelope.type).toBe(EnvelopeType.SERVER_DELIVERY_RECEIPT);
        const back = envelopeToChatFrame(envelope, sender.handle);
        expect(back.case).toBe("receipt");
        expect(equals(whatsapp.ServerReceiptSchema, back.value as whatsapp.ServerReceipt, receipt)).toBe(
          true,
        );
      }),
    );
  });

  test("renders a sealed-sender envelope without a sender", () => {
    const frame = envelopeToChatFrame(
      create(EnvelopeSchema, { id: "x", type: EnvelopeType.SEALED_SENDER, destination: ME }),
      undefined,
    );
    expect(frame.case === "message" && frame.value.from).toBe("");
  });
});

/** Directory stand-ins: handle ⇄ account id for a set of handles. */
function directoryOf(handles: Handle[], ids: string[]) {
  const byKey = new Map(handles.map((h, i) => [handleKey(h), ids[i] ?? ""]));
  const byId = new Map(handles.map((h, i) => [ids[i] ?? "", h]));
  return {
    accountIdOf: (h: Handle) => byKey.get(handleKey(h)) ?? "",
    handleOf: (id: string) => byId.get(id) as Handle,
  };
}

const common = {
  id: clientId,
  t: int64,
  ephemeral: fc.boolean(),
  forwarded: fc.boolean(),
  reportTag: bytes,
  urgent: fc.boolean(),
};

const BOB = create(HandleSchema, { app: App.WHATSAPP, value: "+15551230002" });
const GROUP_ID = "3b1f6a2e-8c4d-4f7a-9e2b-5d6c7a8b9c0d";
/** A one-to-one OutgoingChat to Bob's device 1. */
const toBob = {
  id: "m1",
  to: formatUserJid(BOB),
  participants: [
    {
      jid: formatUserJid(BOB, 1),
      registrationId: 7,
      kind: whatsapp.MessageKind.MSG,
      ciphertext: new Uint8Array([1]),
    },
  ],
};

describe("outgoingChatToSend", () => {
  test("round-trips a one-to-one OutgoingChat → SendMessageRequest → OutgoingChat", () => {
    const arb = fc.record({
      ...common,
      noServerReceipt: fc.boolean(),
      to: handleArb,
      accountId: uuid,
      participants: fc.array(
        fc.record({ device: deviceArb, registrationId, kind: kindArb, ciphertext: bytes }),
        { maxLength: 6 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ to, accountId, participants, ...rest }) => {
        const msg = create(whatsapp.OutgoingChatSchema, {
          ...rest,
          to: formatUserJid(to),
          participants: participants.map(({ device, ...p }) => ({ ...p, jid: formatUserJid(to, device) })),
        });
        const dir = directoryOf([to], [accountId]);
        const plan = outgoingChatToSend(msg, { sender: ME, accountIdOf: dir.accountIdOf });
        expect(plan.kind).toBe("user");
        expect(plan.request.sender).toEqual(ME);
        expect(plan.kind === "user" && plan.request.destinationAccountId).toBe(accountId);
        expect(plan.kind === "user" && plan.request.noDeliveryReceipt).toBe(msg.noServerReceipt);
        expect(equals(whatsapp.OutgoingChatSchema, sendToOutgoingChat(plan, dir), msg)).toBe(true);
      }),
    );
  });

  test("round-trips a group OutgoingChat → SendGroupMessageRequest → OutgoingChat", () => {
    const arb = fc.record({
      ...common,
      groupId: uuid,
      groupCiphertext: bytes,
      members: distinctHandles(4).chain((hs) =>
        fc.tuple(
          fc.constant(hs),
          fc.array(uuid, { minLength: hs.length, maxLength: hs.length }),
          fc.array(
            fc.uniqueArray(fc.record({ device: deviceArb, registrationId }), {
              minLength: 1,
              maxLength: 3,
              selector: (d) => d.device,
            }),
            {
              minLength: hs.length,
              maxLength: hs.length,
            },
          ),
        ),
      ),
    });
    fc.assert(
      fc.property(arb, ({ groupId, members: [handles, ids, devices], ...rest }) => {
        const msg = create(whatsapp.OutgoingChatSchema, {
          ...rest,
          to: formatGroupJid(groupId),
          participants: handles.flatMap((h, i) =>
            (devices[i] ?? []).map((d) => ({
              jid: formatUserJid(h, d.device),
              registrationId: d.registrationId,
            })),
          ),
        });
        const dir = directoryOf(handles, ids);
        const plan = outgoingChatToSend(msg, { sender: ME, accountIdOf: dir.accountIdOf });
        expect(plan.kind).toBe("group");
        expect(plan.kind === "group" && plan.request.expectedRecipients.map((r) => r.accountId)).toEqual(ids);
        expect(equals(whatsapp.OutgoingChatSchema, sendToOutgoingChat(plan, dir), msg)).toBe(true);
      }),
    );
  });

  test("maps no_server_receipt of a one-to-one send to no_delivery_receipt and back", () => {
    const dir = directoryOf([BOB], ["b"]);
    for (const noServerReceipt of [true, false]) {
      const msg = create(whatsapp.OutgoingChatSchema, { ...toBob, noServerReceipt });
      const plan = outgoingChatToSend(msg, { sender: ME, accountIdOf: dir.accountIdOf });
      expect(plan.kind === "user" && plan.request.noDeliveryReceipt).toBe(noServerReceipt);
      expect(sendToOutgoingChat(plan, dir).noServerReceipt).toBe(noServerReceipt);
    }
  });

  test("accepts and ignores no_server_receipt on a group send", () => {
    const group = { id: "g1", to: formatGroupJid(GROUP_ID), groupCiphertext: new Uint8Array([7]) };
    const ctx = { sender: ME, accountIdOf: () => "b" };
    const flagged = outgoingChatToSend(
      create(whatsapp.OutgoingChatSchema, { ...group, noServerReceipt: true }),
      ctx,
    );
    const plain = outgoingChatToSend(create(whatsapp.OutgoingChatSchema, group), ctx);
    expect(flagged.kind).toBe("group");
    expect(
      equals(
        SendGroupMessageRequestSchema,
        flagged.request as SendGroupMessageRequest,
        plain.request as SendGroupMessageRequest,
      ),
    ).toBe(true);
    expect(sendToOutgoingChat(flagged, directoryOf([], [])).noServerReceipt).toBe(false);
  });

  test("rejects a participant of another user", () => {
    const to = create(whatsapp.OutgoingChatSchema, {
      id: "m1",
      to: "15551230001@s.whatsapp.net",
      participants: [
        {
          jid: "15551230002:1@s.whatsapp.net",
          kind: whatsapp.MessageKind.MSG,
          ciphertext: new Uint8Array([1]),
        },
      ],
    });
    expect(() => outgoingChatToSend(to, { sender: ME, accountIdOf: () => "a" })).toThrow(/not a device of/);
  });
});

describe("sendResponseToAck", () => {
  const h = create(HandleSchema, { app: App.WHATSAPP, value: "+15551230002" });

  test("renders outcomes with device JIDs", () => {
    const sent = sendResponseToAck(
      "m1",
      create(SendMessageResponseSchema, {
        result: { case: "sent", value: { messageId: "s1", serverTimestampMs: 5n } },
      }),
      h,
    );
    expect(sent).toMatchObject({ id: "m1", status: whatsapp.SendAckStatus.OK, serverId: "s1", serverT: 5n });
    const mismatched = sendResponseToAck(
      "m1",
      create(SendMessageResponseSchema, {
        result: { case: "mismatchedDevices", value: { missingDevices: [2], extraDevices: [3] } },
      }),
      h,
    );
    expect(mismatched).toMatchObject({
      status: whatsapp.SendAckStatus.DEVICES_CHANGED,
      missing: ["15551230002:2@s.whatsapp.net"],
      extra: ["15551230002:3@s.whatsapp.net"],
    });
    const stale = sendResponseToAck(
      "m1",
      create(SendMessageResponseSchema, { result: { case: "staleDevices", value: { staleDevices: [1] } } }),
      h,
    );
    expect(stale.stale).toEqual(["15551230002:1@s.whatsapp.net"]);
    const missing = sendResponseToAck(
      "m1",
      create(SendMessageResponseSchema, { result: { case: "recipientNotFound", value: {} } }),
      h,
    );
    expect(missing.status).toBe(whatsapp.SendAckStatus.NOT_FOUND);
  });

  test("renders group mismatches of several accounts", () => {
    const other = create(HandleSchema, { app: App.MESSENGER, value: "100004" });
    const ack = groupSendResponseToAck(
      "g1",
      create(SendGroupMessageResponseSchema, {
        result: {
          case: "mismatchedDevices",
          value: {
            mismatched: [{ accountId: "a", missingDevices: [2] }],
            stale: [{ accountId: "b", staleDevices: [1] }],
          },
        },
      }),
      (id) => (id === "a" ? h : other),
    );
    expect(ack).toMatchObject({
      status: whatsapp.SendAckStatus.DEVICES_CHANGED,
      missing: ["15551230002:2@s.whatsapp.net"],
      stale: ["100004:1@messenger"],
    });
  });
});

describe("chatErrorOf", () => {
  test("keeps a rate limit's code, reason and retry hint", () => {
    const err = new AppError(Code.ResourceExhausted, "RATE_LIMITED", "newconv rate limit exceeded", {
      retryAfterMs: 1799.2,
    });
    expect(chatErrorOf("m-1", err)).toMatchObject({
      id: "m-1",
      code: Code.ResourceExhausted,
      reason: "RATE_LIMITED",
      retryAfterMs: 1800n,
    });
  });

  test("gives no retry hint without one, and hides anything that is not an AppError", () => {
    expect(
      chatErrorOf("m-2", new AppError(Code.InvalidArgument, "INVALID_JID", "bad jid")).retryAfterMs,
    ).toBe(0n);
    expect(chatErrorOf("m-3", new Error("secret detail"))).toMatchObject({
      code: Code.Internal,
      reason: "INTERNAL",
      message: "internal error",
      retryAfterMs: 0n,
    });
  });
});
