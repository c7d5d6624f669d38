import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import type * as protobufEsModule from "@bufbuild/protobuf";
import {
  App,
  EnvelopeType,
  HandleSchema,
  newEnvelope,
  SendGroupMessageResponseSchema,
  SendMessageResponseSchema,
  whatsapp,
  type Handle,
} from "@switchboard/proto";
import { AppError, Code } from "@switchboard/errors";
import {
  bigintOrNumber,
  initOrMessage,
  LOSSY_STRINGS,
  maybeUnset,
  outcome,
  protobufEsCalls,
  randomAnyText,
  randomBytes,
  randomText,
  UINT32_SAMPLES,
} from "@switchboard/grpc/testing";
import { seededRandom, type SeededRandom } from "@switchboard/testkit";
import { describe, expect, test, vi } from "vitest";
import {
  chatErrorOf,
  envelopeToChatFrame,
  groupSendResponseToAck,
  sendResponseToAck,
} from "../domain/translate.js";
import { CHAT_CODEC_MESSAGE_FIELDS, decodeChatRequest, encodeChatResponse } from "./chat-codec.js";

// Counts the codec's calls into protobuf-es, to show which frames take the hand-written path.
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const actual = await importOriginal<typeof protobufEsModule>();
  return { ...actual, toBinary: vi.fn(actual.toBinary), fromBinary: vi.fn(actual.fromBinary) };
});

const {
  ChatRequestSchema,
  ChatResponseSchema,
  ChatAckSchema,
  DeviceCiphertextSchema,
  OutgoingChatSchema,
  IncomingChatSchema,
  SendAckSchema,
  ServerReceiptSchema,
  QueueDrainedSchema,
  ChatErrorSchema,
} = whatsapp;
type Frame = Parameters<typeof encodeChatResponse>[0];

const rng = seededRandom;
type Rng = SeededRandom;

/** int64 values the decoder reads itself (non-negative, below 2^53). */
const I64_FAST = [0n, 1n, 127n, 128n, 1_700_000_000_000n, 2n ** 32n, 2n ** 53n - 1n];
/** int64 values it leaves to protobuf-es (the encoder writes them all). */
const I64_ODD = [2n ** 53n, 2n ** 62n, 2n ** 63n - 1n, -1n, -(2n ** 40n), -(2n ** 63n)];
const KINDS = [0, 1, 2, 3, 4, 5, 99, 2 ** 31 - 1];

// From the seeded generator (not randomUUID), so a failing run replays.
const timestamp = (r: Rng) => BigInt(1_700_000_000_000 + r.int(1e9));

// ---------------------------------------------------------------------------------------------
// decodeChatRequest

/**
 * A random ChatRequest. Without `odd`, every value is one the decoder reads itself; with it, some
 * are left to protobuf-es (lossy strings, negative and large int64s).
 */
function chatRequest(r: Rng, odd: boolean): whatsapp.ChatRequest {
  const s = (): string => (odd && r.next() < 0.1 ? r.pick(LOSSY_STRINGS) : randomText(r));
  const i64 = (): bigint =>
    odd && r.next() < 0.3 ? r.pick(I64_ODD) : r.next() < 0.7 ? timestamp(r) : r.pick(I64_FAST);
  if (r.next() < 0.6) {
    const participants = Array.from({ length: r.pick([0, 1, 1, 2, 3, 6]) }, () => ({
      jid: s(),
      registrationId: r.next() < 0.7 ? 1 + r.int(16380) : r.pick(UINT32_SAMPLES),
      kind: r.pick(KINDS),
      ciphertext: r.next() < 0.1 ? new Uint8Array(0) : randomBytes(r, 400),
    }));
    return create(ChatRequestSchema, {
      frame: {
        case: "send",
        value: {
          id: s(),
          to: s(),
          participants,
          groupCiphertext: r.next() < 0.2 ? randomBytes(r, 300) : new Uint8Array(0),
          t: i64(),
          ephemeral: r.next() < 0.2,
          forwarded: r.next() < 0.2,
          reportTag: r.next() < 0.3 ? randomBytes(r, 48) : new Uint8Array(0),
          urgent: r.next() < 0.5,
          noServerReceipt: r.next() < 0.3,
        },
      },
    });
  }
  if (r.next() < 0.9)
    return create(ChatRequestSchema, {
      frame: { case: "ack", value: { ids: Array.from({ length: r.pick([0, 1, 2, 5, 30]) }, s) } },
    });
  return create(ChatRequestSchema, {});
}

/**
 * Decodes with both; both must throw the same error, or give strictly equal messages (same
 * `$typeName`s, default values, bigints, Uint8Array or Buffer views). Returns how often the codec
 * called protobuf-es.
 */
function sameRequest(bytes: Uint8Array): number {
  const expected = outcome(() => fromBinary(ChatRequestSchema, bytes));
  let got: whatsapp.ChatRequest | string = "";
  const calls = protobufEsCalls(() => (got = outcome(() => decodeChatRequest(bytes)))).fromBinary;
  expect(got).toStrictEqual(expected);
  return calls;
}

describe("decodeChatRequest", () => {
  test("reads random send and ack frames itself, exactly as protobuf-es does", () => {
    const r = rng(1);
    const kinds = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const msg = chatRequest(r, false);
      kinds.add(String(msg.frame.case));
      const bytes = toBinary(ChatRequestSchema, msg);
      expect(sameRequest(bytes), `message ${i}`).toBe(0);
      // grpc-js hands over Buffers: bytes fields are then Buffer views, as with protobuf-es.
      expect(sameRequest(Buffer.from(bytes)), `message ${i}`).toBe(0);
    }
    expect([...kinds].sort()).toEqual(["ack", "send", "undefined"]);
  });

  test("decodes random frames with lossy strings and negative or large int64s as protobuf-es does", () => {
    let fallbacks = 0;
    const r = rng(2);
    for (let i = 0; i < 1000; i++) {
      fallbacks += sameRequest(toBinary(ChatRequestSchema, chatRequest(r, true)));
    }
    // Some took the fallback, and not all.
    expect(fallbacks).toBeGreaterThan(100);
    expect(fallbacks).toBeLessThan(900);
  });

  test("reads every field of a send with several participants", () => {
    const msg = create(ChatRequestSchema, {
      frame: {
        case: "send",
        value: {
          id: "c1",
          to: "15551234567@s.whatsapp.net",
          participants: [
            {
              jid: "15551234567:1@s.whatsapp.net",
              registrationId: 7,
              kind: 2,
              ciphertext: randomBytes(rng(1), 50),
            },
            {
              jid: "15551234567:2@s.whatsapp.net",
              registrationId: 8,
              kind: 1,
              ciphertext: randomBytes(rng(2), 50),
            },
          ],
          groupCiphertext: new Uint8Array([1, 2]),
          t: 1_700_000_000_000n,
          ephemeral: true,
          forwarded: true,
          reportTag: new Uint8Array([3]),
          urgent: true,
          noServerReceipt: true,
        },
      },
    });
    const wire = toBinary(ChatRequestSchema, msg);
    expect(sameRequest(wire)).toBe(0);
    expect(decodeChatRequest(wire)).toStrictEqual(msg);
  });

  test("frames with unknown fields, repeated singular messages or odd wire types decode as protobuf-es does", () => {
    const send = toBinary(
      ChatRequestSchema,
      create(ChatRequestSchema, {
        frame: { case: "send", value: { id: "c", to: "x", participants: [{ jid: "j", kind: 1 }] } },
      }),
    );
    const unknownField = Uint8Array.from([...send, 0xf8, 0x01, 0x05]); // field 31, varint 5
    expect(sameRequest(unknownField)).toBe(1);
    expect(decodeChatRequest(unknownField).$unknown).toBeDefined();
    const cases = [
      Uint8Array.from([...send, ...send]), // the oneof set twice: the messages merge
      Uint8Array.from([0x0a, 0x02, 0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00]), // send, then ack
      Uint8Array.from([0x12, 0x02, 0x0a, 0x00, 0x12, 0x02, 0x0a, 0x01]), // two acks (merged)
      Uint8Array.from([0x0a, 0x03, 0xf8, 0x01, 0x05]), // OutgoingChat with an unknown field
      Uint8Array.from([0x0a, 0x05, 0x1a, 0x03, 0xf8, 0x01, 0x05]), // DeviceCiphertext with one
      Uint8Array.from([0x12, 0x03, 0x10, 0x01, 0x00]), // ChatAck field 2
      Uint8Array.from([0x08, 0x01]), // ChatRequest field 1 as a varint
      Uint8Array.from([0x0a, 0x02, 0x08, 0x01]), // OutgoingChat id as a varint
      Uint8Array.from([0x0a, 0x02, 0x2a, 0x00]), // OutgoingChat t as length-delimited
      Uint8Array.from([0x0a, 0x02, 0x30, 0x02]), // ephemeral = 2
      Uint8Array.from([0x0a, 0x02, 0x50, 0x02]), // no_server_receipt = 2
      Uint8Array.from([0x0a, 0x08, 0x1a, 0x06, 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f]), // kind 2^32 - 1 (int32 -1)
      Uint8Array.from([0x0a, 0x09, 0x1a, 0x07, 0x10, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]), // non-minimal uint32
      Uint8Array.from([0x0a, 0x0c, 0x28, ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]]), // t = -1
      Uint8Array.from([0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28]), // an id that is not UTF-8
      Uint8Array.from([0x0a, 0x06, 0x0a, 0x04, 0xef, 0xbb, 0xbf, 0x61]), // an id with a byte order mark
      Uint8Array.from([0x12, 0x05, 0x0a, 0x03, 0xef, 0xbf, 0xbd]), // an ack id that is U+FFFD
      Uint8Array.from([0x0a, 0x04, 0x88, 0x80, 0x00, 0x07]), // OutgoingChat field 1 tag in three bytes
      Uint8Array.from([0x8a, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00]), // a tag over 2^32
      Uint8Array.from([0x0a, 0x03, 0x1a, 0x05, 0x0a]), // a participant longer than its send
      Uint8Array.from([0x0b, 0x0c]), // a group
      Uint8Array.from([0x00]), // field 0
      new Uint8Array(0),
    ];
    for (const bytes of cases) sameRequest(bytes);
  });

  test("truncated and corrupted input fails or decodes exactly as protobuf-es does", () => {
    const r = rng(99);
    let failures = 0;
    for (let i = 0; i < 2000; i++) {
      const good = toBinary(ChatRequestSchema, chatRequest(r, r.next() < 0.3));
      if (good.length === 0) continue;
      const cut = good.subarray(0, r.int(good.length));
      if (typeof outcome(() => fromBinary(ChatRequestSchema, cut)) === "string") failures++;
      sameRequest(cut);
      const bad = good.slice();
      bad[r.int(bad.length)] = r.int(256);
      sameRequest(bad);
    }
    expect(failures).toBeGreaterThan(500);
  });
});

// ---------------------------------------------------------------------------------------------
// encodeChatResponse

/** Any int64 (the encoder writes them all), as a bigint or a number (protobuf-es takes both). */
const anyInt64 = (r: Rng) =>
  bigintOrNumber(r, r.next() < 0.7 ? timestamp(r) : r.pick([...I64_FAST, ...I64_ODD]));
/** Half the frames' values are created messages, as translate.ts makes them. */
const shape = <T extends object>(r: Rng, schema: DescMessage, init: T): T =>
  initOrMessage(r, schema, init, 0.5);

/** A random frame of the kinds the codec writes itself (every value one it writes). */
function responseFrame(r: Rng): Frame {
  const k = r.int(10);
  if (k < 5)
    return {
      case: "message",
      value: shape(r, IncomingChatSchema, {
        serverId: maybeUnset(r, randomAnyText(r)),
        id: maybeUnset(r, randomAnyText(r)),
        from: maybeUnset(r, r.next() < 0.2 ? "" : randomAnyText(r)),
        group: maybeUnset(r, r.next() < 0.7 ? "" : `${r.uuid()}@g.us`),
        kind: maybeUnset(r, r.pick(KINDS)),
        ciphertext: maybeUnset(r, r.next() < 0.1 ? new Uint8Array(0) : randomBytes(r, 600)),
        t: maybeUnset(r, anyInt64(r)),
        serverT: maybeUnset(r, anyInt64(r)),
        ephemeral: maybeUnset(r, r.next() < 0.2),
        forwarded: maybeUnset(r, r.next() < 0.2),
        reportTag: maybeUnset(r, r.next() < 0.3 ? randomBytes(r, 48) : new Uint8Array(0)),
        urgent: maybeUnset(r, r.next() < 0.5),
        senderRegistrationId: maybeUnset(r, r.next() < 0.7 ? 1 + r.int(16380) : r.pick(UINT32_SAMPLES)),
        sequence: maybeUnset(r, bigintOrNumber(r, r.next() < 0.8 ? BigInt(1 + r.int(1e6)) : r.pick(I64_ODD))),
        thirdPartyProvider: maybeUnset(r, r.next() < 0.8 ? "" : randomAnyText(r)),
        messageRequest: maybeUnset(r, r.next() < 0.2),
        serverFrankingTag: maybeUnset(r, r.next() < 0.5 ? randomBytes(r, 40) : new Uint8Array(0)),
      }),
    };
  if (k < 8) {
    const jids = () => Array.from({ length: r.pick([0, 0, 1, 2, 4]) }, () => randomAnyText(r));
    return {
      case: "sendAck",
      value: shape(r, SendAckSchema, {
        id: maybeUnset(r, randomAnyText(r)),
        // 99: no such status (an open enum takes it).
        status: maybeUnset(r, r.pick([0, 1, 2, 3, 99]) as whatsapp.SendAckStatus),
        serverId: maybeUnset(r, r.next() < 0.3 ? "" : randomAnyText(r)),
        serverT: maybeUnset(r, anyInt64(r)),
        missing: maybeUnset(r, jids()),
        extra: maybeUnset(r, jids()),
        stale: maybeUnset(r, jids()),
      }),
    };
  }
  if (k < 9)
    return {
      case: "receipt",
      value: shape(r, ServerReceiptSchema, {
        serverId: maybeUnset(r, randomAnyText(r)),
        id: maybeUnset(r, randomAnyText(r)),
        from: maybeUnset(r, randomAnyText(r)),
        t: maybeUnset(r, anyInt64(r)),
      }),
    };
  return { case: "queueDrained", value: shape(r, QueueDrainedSchema, {}) };
}

/** What protobuf-es writes for a frame: its bytes, or the message of the error it throws. */
function protobufEs(frame: Frame): Uint8Array | string {
  return outcome(() => toBinary(ChatResponseSchema, create(ChatResponseSchema, { frame })));
}

/**
 * The codec must write the bytes protobuf-es writes, or throw its error. Returns how often it
 * called protobuf-es.
 */
function sameBytes(frame: Frame): number {
  const expected = protobufEs(frame);
  let got: Uint8Array | string = "";
  const calls = protobufEsCalls(() => (got = outcome(() => encodeChatResponse(frame)))).toBinary;
  if (typeof expected === "string") {
    expect(got).toBe(expected);
    return calls;
  }
  expect(got).toBeInstanceOf(Uint8Array);
  expect(Buffer.from(got).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
  return calls;
}

const handles: Handle[] = [
  create(HandleSchema, { app: App.WHATSAPP, value: "+15551234567" }),
  create(HandleSchema, { app: App.MESSENGER, value: "100004" }),
  create(HandleSchema, { app: App.INSTAGRAM, value: "ada.lövelace" }),
  create(HandleSchema, { app: App.THIRD_PARTY, value: "alice", providerId: "acme" }),
];

describe("encodeChatResponse", () => {
  test("writes random message, sendAck, receipt and queueDrained frames itself, as protobuf-es does", () => {
    const kinds = new Set<string>();
    const r = rng(3);
    for (let i = 0; i < 2000; i++) {
      const frame = responseFrame(r);
      kinds.add(String(frame?.case));
      expect(sameBytes(frame), `frame ${i}`).toBe(0);
    }
    expect([...kinds].sort()).toEqual(["message", "queueDrained", "receipt", "sendAck"]);
  });

  test("writes the frames translate.ts makes itself, as protobuf-es does", () => {
    const r = rng(5);
    for (let i = 0; i < 500; i++) {
      const envelope = newEnvelope({
        id: r.uuid(),
        clientMessageId: randomAnyText(r),
        type: r.pick([
          EnvelopeType.CIPHERTEXT,
          EnvelopeType.PREKEY_MESSAGE,
          EnvelopeType.SENDER_KEY_MESSAGE,
          EnvelopeType.SEALED_SENDER,
          EnvelopeType.SERVER_DELIVERY_RECEIPT,
        ]),
        source: r.next() < 0.8 ? { accountId: r.uuid(), deviceId: 1 + r.int(6) } : undefined,
        sourceApp: r.pick([App.WHATSAPP, App.MESSENGER, App.THIRD_PARTY]),
        sourceProviderId: r.next() < 0.3 ? "acme" : "",
        sourceRegistrationId: 1 + r.int(16380),
        content: randomBytes(r, 600),
        serverTimestampMs: timestamp(r),
        clientTimestampMs: r.next() < 0.9 ? timestamp(r) : r.pick(I64_ODD),
        ephemeral: r.next() < 0.2,
        urgent: r.next() < 0.5,
        groupId: r.next() < 0.3 ? r.uuid() : "",
        forwarded: r.next() < 0.1,
        reportTag: r.next() < 0.5 ? randomBytes(r, 32) : new Uint8Array(0),
        sequence: BigInt(1 + r.int(1e6)),
        serverFrankingTag: r.next() < 0.5 ? randomBytes(r, 32) : new Uint8Array(0),
        messageRequest: r.next() < 0.2,
      });
      const handle = r.next() < 0.9 ? r.pick(handles) : undefined;
      expect(sameBytes(envelopeToChatFrame(envelope, handle))).toBe(0);

      const recipient = r.pick(handles);
      const devices = () => Array.from({ length: r.int(4) }, () => 1 + r.int(6));
      const response = create(SendMessageResponseSchema, {
        result: r.pick<MessageInitShape<typeof SendMessageResponseSchema>["result"]>([
          { case: "sent", value: { messageId: r.uuid(), serverTimestampMs: timestamp(r) } },
          { case: "sent", value: { messageId: r.uuid(), serverTimestampMs: timestamp(r), duplicate: true } },
          { case: "mismatchedDevices", value: { missingDevices: devices(), extraDevices: devices() } },
          { case: "staleDevices", value: { staleDevices: devices() } },
          { case: "recipientNotFound", value: {} },
        ]),
      });
      expect(
        sameBytes({ case: "sendAck", value: sendResponseToAck(randomAnyText(r), response, recipient) }),
      ).toBe(0);

      const accounts = handles.map(() => r.uuid());
      const group = create(SendGroupMessageResponseSchema, {
        result: r.pick<MessageInitShape<typeof SendGroupMessageResponseSchema>["result"]>([
          { case: "sent", value: { messageId: r.uuid(), serverTimestampMs: timestamp(r) } },
          {
            case: "mismatchedDevices",
            value: {
              mismatched: accounts
                .slice(0, r.int(3))
                .map((accountId) => ({ accountId, missingDevices: devices(), extraDevices: devices() })),
              stale: accounts.slice(2).map((accountId) => ({ accountId, staleDevices: devices() })),
            },
          },
          { case: "notAMember", value: {} },
        ]),
      });
      const ack = groupSendResponseToAck(
        randomAnyText(r),
        group,
        (accountId) => handles[accounts.indexOf(accountId)] as Handle,
      );
      expect(sameBytes({ case: "sendAck", value: ack })).toBe(0);
    }
    expect(sameBytes({ case: "queueDrained", value: {} })).toBe(0);
  });

  test("writes every field of a message frame, with two-byte tags for fields 30 and 40", () => {
    const frame: Frame = {
      case: "message",
      value: create(IncomingChatSchema, {
        serverId: "s",
        id: "i",
        from: "f",
        group: "g",
        kind: 3,
        ciphertext: new Uint8Array([1]),
        t: 1n,
        serverT: 2n,
        ephemeral: true,
        forwarded: true,
        reportTag: new Uint8Array([2]),
        urgent: true,
        senderRegistrationId: 3,
        sequence: -1n,
        thirdPartyProvider: "p",
        messageRequest: true,
        serverFrankingTag: new Uint8Array([4]),
      }),
    };
    expect(sameBytes(frame)).toBe(0);
    const wire = encodeChatResponse(frame);
    expect(fromBinary(ChatResponseSchema, new Uint8Array(wire))).toStrictEqual(
      create(ChatResponseSchema, { frame }),
    );
  });

  test("falls back to protobuf-es for error frames and values it cannot write exactly", () => {
    const message = (m: object) => ({ case: "message", value: { serverId: "s", ...m } }) as unknown as Frame;
    const created = (m: object) =>
      ({
        case: "message",
        value: { ...create(IncomingChatSchema, { serverId: "s" }), ...m },
      }) as unknown as Frame;
    const ack = (m: object) => ({ case: "sendAck", value: { id: "a", ...m } }) as unknown as Frame;
    const odd: Frame[] = [
      {
        case: "error",
        value: chatErrorOf("c", new AppError(Code.ResourceExhausted, "RATE_LIMITED", "slow")),
      },
      { case: "error", value: create(ChatErrorSchema, { code: -1, message: "m" }) },
      message({ kind: -1 }),
      message({ kind: 1.5 }),
      message({ kind: "1" }),
      message({ senderRegistrationId: -1 }),
      message({ senderRegistrationId: 2 ** 32 }),
      message({ senderRegistrationId: Number.NaN }),
      message({ t: 2 ** 60 }),
      message({ t: 1.5 }),
      message({ t: "7" }),
      message({ t: 2n ** 63n }),
      message({ serverT: -(2n ** 63n) - 1n }),
      message({ ephemeral: 1 }),
      message({ urgent: "yes" }),
      message({ from: 5 }),
      message({ ciphertext: [1, 2, 3] }),
      message({ ciphertext: "abc" }),
      message({ reportTag: null, group: null }), // null is unset in an init object
      created({ group: undefined }),
      created({ ciphertext: null }),
      created({ t: undefined }),
      created({ $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }] }),
      message({ $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }] }),
      ack({ missing: ["a", 1] }),
      ack({ missing: [null] }),
      ack({ extra: "a" }),
      ack({ stale: null }),
      ack({ status: -2 }),
      {
        case: "sendAck",
        value: { ...create(SendAckSchema, { id: "a" }), stale: undefined },
      } as unknown as Frame,
      {
        case: "receipt",
        value: { ...create(ServerReceiptSchema, { id: "r" }), from: null },
      } as unknown as Frame,
      {
        case: "queueDrained",
        value: {
          ...create(QueueDrainedSchema),
          $unknown: [{ no: 1, wireType: 0, data: new Uint8Array([1]) }],
        },
      },
      // A message of another type is read as an init object by create().
      { case: "message", value: create(ServerReceiptSchema, { serverId: "s", t: 5n }) } as unknown as Frame,
      { case: "message", value: undefined } as unknown as Frame,
      { case: "message", value: null } as unknown as Frame,
      { case: "bogus", value: {} } as unknown as Frame,
      { case: undefined },
      undefined,
    ];
    for (const frame of odd) sameBytes(frame);
    // The error frame, and a value the hand-written path cannot take, go to protobuf-es.
    expect(sameBytes(odd[0])).toBe(1);
    expect(sameBytes(message({ t: 2 ** 60 }))).toBe(1);
  });

  test("writes large frames exactly, however often its table of string lengths grows", () => {
    for (const n of [10, 63, 64, 65, 200, 1000]) {
      const jids = Array.from({ length: n }, (_, i) => `1555000${i}:${i % 7}@s.whatsapp.net`);
      const frame: Frame = {
        case: "sendAck",
        value: create(SendAckSchema, {
          id: "x",
          status: 2,
          missing: jids,
          extra: jids,
          stale: ["", ...jids],
        }),
      };
      expect(sameBytes(frame)).toBe(0);
    }
  });
});

describe("chat codec", () => {
  test("knows every field of the messages it reads and writes (update it when they change)", () => {
    const schemas = [
      ChatRequestSchema,
      OutgoingChatSchema,
      DeviceCiphertextSchema,
      ChatAckSchema,
      ChatResponseSchema,
      IncomingChatSchema,
      SendAckSchema,
      ServerReceiptSchema,
      QueueDrainedSchema,
    ];
    const numbers = (d: DescMessage) => d.fields.map((f) => f.number);
    expect(Object.fromEntries(schemas.map((s) => [s.typeName, numbers(s)]))).toEqual(
      CHAT_CODEC_MESSAGE_FIELDS,
    );
  });
});
