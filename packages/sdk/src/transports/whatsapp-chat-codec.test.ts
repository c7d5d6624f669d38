import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import type * as protobufEsModule from "@bufbuild/protobuf";
import {
  App,
  EnvelopeType,
  HandleSchema,
  SendGroupMessageRequestSchema,
  SendMessageRequestSchema,
  whatsapp,
} from "@switchboard/proto";
import {
  bigintOrNumber,
  initOrMessage,
  INT64_SAMPLES,
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
import { describe, expect, it, vi } from "vitest";
import {
  CHAT_CODEC_MESSAGE_FIELDS,
  decodeChatResponse,
  encodeChatRequest,
  whatsAppChatCodecs,
} from "./whatsapp-chat-codec.js";
import { whatsAppTranslation } from "./whatsapp-transport.js";

// Counts the codec's calls into protobuf-es, to show which frames take the hand-written path.
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const actual = await importOriginal<typeof protobufEsModule>();
  return { ...actual, toBinary: vi.fn(actual.toBinary), fromBinary: vi.fn(actual.fromBinary) };
});

const {
  ChatAckSchema,
  ChatErrorSchema,
  ChatRequestSchema,
  ChatResponseSchema,
  DeviceCiphertextSchema,
  IncomingChatSchema,
  OutgoingChatSchema,
  QueueDrainedSchema,
  SendAckSchema,
  ServerReceiptSchema,
} = whatsapp;

type RequestInit = MessageInitShape<typeof ChatRequestSchema>;
type ResponseInit = MessageInitShape<typeof ChatResponseSchema>;
type Rng = SeededRandom;

const ENUMS = [0, 1, 2, 3, 4, 5, 99, 2 ** 31 - 1];

// From the seeded generator (not randomUUID), so a failing run replays.
const jid = (r: Rng) => `${r.int(1e10)}:${r.int(5)}@s.whatsapp.net`;
const maybeBytes = (r: Rng, max: number) => (r.next() < 0.3 ? new Uint8Array(0) : randomBytes(r, max));
const int64 = (r: Rng) => (r.next() < 0.6 ? BigInt(Date.now() + r.int(1e6)) : r.pick(INT64_SAMPLES));

function outgoingChat(r: Rng) {
  return initOrMessage(r, OutgoingChatSchema, {
    id: maybeUnset(r, randomText(r)),
    to: maybeUnset(r, r.next() < 0.8 ? jid(r) : randomText(r)),
    participants: maybeUnset(
      r,
      Array.from({ length: r.pick([0, 1, 1, 2, 3, 6]) }, () =>
        initOrMessage(r, DeviceCiphertextSchema, {
          jid: maybeUnset(r, r.next() < 0.8 ? jid(r) : randomText(r)),
          registrationId: maybeUnset(r, r.pick(UINT32_SAMPLES)),
          kind: maybeUnset(r, r.pick(ENUMS)),
          ciphertext: maybeUnset(r, maybeBytes(r, 400)),
        }),
      ),
    ),
    groupCiphertext: maybeUnset(r, r.next() < 0.7 ? new Uint8Array(0) : randomBytes(r, 400)),
    t: maybeUnset(r, bigintOrNumber(r, int64(r))),
    ephemeral: maybeUnset(r, r.next() < 0.2),
    forwarded: maybeUnset(r, r.next() < 0.2),
    reportTag: maybeUnset(r, r.next() < 0.5 ? randomBytes(r, 64) : new Uint8Array(0)),
    urgent: maybeUnset(r, r.next() < 0.5),
    noServerReceipt: maybeUnset(r, r.next() < 0.3),
  });
}

function chatRequest(r: Rng): RequestInit {
  if (r.next() < 0.6) {
    return initOrMessage(r, ChatRequestSchema, { frame: { case: "send" as const, value: outgoingChat(r) } });
  }
  const value = initOrMessage(r, ChatAckSchema, {
    ids: maybeUnset(
      r,
      Array.from({ length: r.pick([0, 1, 2, 5, 20]) }, () => randomText(r)),
    ),
  });
  return initOrMessage(r, ChatRequestSchema, { frame: { case: "ack" as const, value } });
}

/**
 * The codec must write the bytes protobuf-es writes, or throw its error; with `roundTrip`, what it
 * wrote must also decode to the message `create` makes.
 */
function sameBytes(init: RequestInit, roundTrip = false) {
  const expected = outcome(() => toBinary(ChatRequestSchema, create(ChatRequestSchema, init)));
  const got = outcome(() => encodeChatRequest(init));
  if (typeof expected === "string") {
    expect(got).toBe(expected);
    return;
  }
  expect(got).toBeInstanceOf(Uint8Array);
  expect(Buffer.from(got as Uint8Array).equals(Buffer.from(expected))).toBe(true);
  if (!roundTrip) return;
  const decoded = fromBinary(ChatRequestSchema, got as Uint8Array);
  expect(equals(ChatRequestSchema, decoded, create(ChatRequestSchema, init))).toBe(true);
}

describe("encodeChatRequest", () => {
  it("writes what protobuf-es writes for random send and ack frames, init shapes and messages", () => {
    const r = seededRandom(1);
    let sends = 0;
    let handWritten = 0;
    for (let i = 0; i < 1000; i++) {
      const init = chatRequest(r);
      if (init.frame?.case === "send") sends++;
      sameBytes(init, true);
      if (protobufEsCalls(() => encodeChatRequest(init)).toBinary === 0) handWritten++;
    }
    // Every one is written by hand: a size the two passes disagree on would fall back.
    expect(handWritten).toBe(1000);
    expect(sends).toBeGreaterThan(400);
    expect(sends).toBeLessThan(800);
  });

  it("writes the frames the transport sends without protobuf-es", () => {
    const r = seededRandom(3);
    const handleOf = () => create(HandleSchema, { app: App.WHATSAPP, value: "+15551234567" });
    const send = whatsAppTranslation.sendRequestToOutgoingChat(
      create(SendMessageRequestSchema, {
        destinationAccountId: r.uuid(),
        messages: [
          { deviceId: 1, registrationId: 4242, type: EnvelopeType.CIPHERTEXT, content: randomBytes(r, 300) },
        ],
        clientMessageId: r.uuid(),
        clientTimestampMs: BigInt(Date.now()),
        urgent: true,
        noDeliveryReceipt: true,
      }),
      handleOf,
    );
    const group = whatsAppTranslation.groupSendRequestToOutgoingChat(
      create(SendGroupMessageRequestSchema, {
        groupId: r.uuid(),
        content: randomBytes(r, 300),
        clientMessageId: r.uuid(),
        clientTimestampMs: BigInt(Date.now()),
        expectedRecipients: [{ accountId: r.uuid(), devices: [{ deviceId: 1, registrationId: 7 }] }],
        reportTag: randomBytes(r, 32),
      }),
      handleOf,
    );
    const frames: RequestInit[] = [
      { frame: { case: "send", value: send } },
      { frame: { case: "send", value: group } },
      { frame: { case: "ack", value: { ids: [r.uuid(), r.uuid()] } } },
      { frame: { case: "ack", value: { ids: [] } } },
    ];
    for (const init of frames) {
      let got: Uint8Array = new Uint8Array(0);
      expect(protobufEsCalls(() => (got = encodeChatRequest(init)))).toEqual({ toBinary: 0, fromBinary: 0 });
      expect(
        Buffer.from(got).equals(Buffer.from(toBinary(ChatRequestSchema, create(ChatRequestSchema, init)))),
      ).toBe(true);
    }
  });

  it("writes long acks exactly, however often its size table grows", () => {
    for (const n of [50, 63, 64, 65, 129, 1000]) {
      const init: RequestInit = {
        frame: { case: "ack", value: { ids: Array.from({ length: n }, (_, i) => `id-${i}-ü`) } },
      };
      let got: Uint8Array = new Uint8Array(0);
      // Written by the codec itself (a disagreement between its passes would fall back).
      expect(protobufEsCalls(() => (got = encodeChatRequest(init))).toBinary).toBe(0);
      sameBytes(init);
      expect(got.length).toBeGreaterThan(n);
    }
  });

  it("writes lone surrogates and byte order marks as protobuf-es does", () => {
    for (const s of LOSSY_STRINGS) {
      sameBytes({
        frame: {
          case: "send",
          value: { id: s, to: s, participants: [{ jid: s, ciphertext: new Uint8Array([1]) }] },
        },
      });
      sameBytes({ frame: { case: "ack", value: { ids: [s, "", s] } } });
    }
  });

  it("falls back to protobuf-es for values it cannot write exactly", () => {
    const send = (m: object): RequestInit => ({ frame: { case: "send", value: m } });
    const participant = (p: object) =>
      send({ participants: [{ jid: "j", ciphertext: new Uint8Array([1]), ...p }] });
    const odd: RequestInit[] = [
      participant({ registrationId: -1 }),
      participant({ registrationId: 1.5 }),
      participant({ registrationId: 2 ** 32 }),
      participant({ registrationId: Number.NaN }),
      participant({ registrationId: "5" }),
      participant({ kind: -1 }),
      participant({ kind: 2 ** 31 }),
      participant({ ciphertext: [1, 2, 3] }),
      participant({ ciphertext: "abc" }),
      participant({ jid: 7 }),
      send({ t: 2n ** 63n }),
      send({ t: -(2n ** 63n) - 1n }),
      send({ t: -(2 ** 40) }),
      send({ t: 2 ** 60 }),
      send({ t: 1.5 }),
      send({ t: "7" }),
      send({ ephemeral: 1 }),
      send({ urgent: "yes" }),
      send({ noServerReceipt: 0 }),
      send({ id: 5 }),
      send({ groupCiphertext: "abc" }),
      send({ id: null, to: null, participants: null, t: null }),
      send({ participants: [null] }),
      send({ participants: [[]] }),
      send({ participants: {} }),
      { frame: { case: "send", value: undefined } } as unknown as RequestInit,
      { frame: { case: "send", value: null } } as unknown as RequestInit,
      { frame: { case: "bogus", value: {} } } as unknown as RequestInit,
      { frame: { case: undefined } },
      {},
      { frame: null } as unknown as RequestInit,
      { frame: { case: "ack", value: { ids: ["a", 1] } } } as unknown as RequestInit,
      { frame: { case: "ack", value: { ids: "abc" } } } as unknown as RequestInit,
      { frame: { case: "ack", value: { ids: ["", "\uD800", "ok"] } } },
      // Created messages are used as is: a plain object inside one is not completed by create().
      create(ChatRequestSchema, { frame: { case: "send", value: { id: "c", t: 3n } } }),
      {
        $typeName: "switchboard.gateway.whatsapp.v1.ChatRequest",
        frame: { case: "send", value: { id: "c", t: 3n } },
      } as unknown as RequestInit,
      {
        $typeName: "switchboard.gateway.whatsapp.v1.ChatRequest",
        frame: { case: "ack", value: { ids: null } },
      } as unknown as RequestInit,
      {
        frame: {
          case: "send",
          value: { ...create(OutgoingChatSchema, { id: "x" }), participants: [{ jid: "j" }] },
        },
      } as unknown as RequestInit,
      {
        frame: {
          case: "send",
          value: { ...create(OutgoingChatSchema, { id: "x" }), t: undefined },
        },
      } as unknown as RequestInit,
      // Unknown fields: written by protobuf-es for a created message, dropped from an init object.
      {
        $typeName: "switchboard.gateway.whatsapp.v1.ChatRequest",
        frame: { case: "ack", value: create(ChatAckSchema, { ids: ["m"] }) },
        $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }],
      } as unknown as RequestInit,
      {
        frame: {
          case: "send",
          value: {
            ...create(OutgoingChatSchema, { id: "m" }),
            $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }],
          },
        },
      } as unknown as RequestInit,
      {
        frame: {
          case: "ack",
          value: { ids: ["m"], $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }] },
        },
      } as unknown as RequestInit,
    ];
    for (const init of odd) sameBytes(init);
    sameBytes(undefined as unknown as RequestInit);
    sameBytes(null as unknown as RequestInit);
  });
});

// ---------------------------------------------------------------------------------------------

function incomingChat(r: Rng): MessageInitShape<typeof IncomingChatSchema> {
  return {
    serverId: maybeUnset(r, randomAnyText(r)),
    id: maybeUnset(r, randomAnyText(r)),
    from: r.next() < 0.9 ? jid(r) : randomAnyText(r),
    group: r.next() < 0.2 ? `${r.uuid()}@g.us` : "",
    kind: r.pick(ENUMS),
    ciphertext: maybeBytes(r, 400),
    t: int64(r),
    serverT: int64(r),
    ephemeral: r.next() < 0.2,
    forwarded: r.next() < 0.2,
    reportTag: maybeBytes(r, 64),
    urgent: r.next() < 0.5,
    senderRegistrationId: r.pick(UINT32_SAMPLES),
    sequence: r.next() < 0.7 ? BigInt(1 + r.int(1e6)) : r.pick(INT64_SAMPLES),
    thirdPartyProvider: r.next() < 0.2 ? randomAnyText(r) : "",
    messageRequest: r.next() < 0.2,
    serverFrankingTag: maybeBytes(r, 32),
  };
}

const jids = (r: Rng) =>
  Array.from({ length: r.pick([0, 0, 1, 2, 4]) }, () => (r.next() < 0.9 ? jid(r) : randomAnyText(r)));

function chatResponse(r: Rng): ResponseInit {
  const k = r.int(12);
  if (k < 4) return { frame: { case: "message", value: incomingChat(r) } };
  if (k < 7)
    return {
      frame: {
        case: "sendAck",
        value: {
          id: randomAnyText(r),
          status: r.pick([0, 1, 1, 1, 2, 3, 99]) as whatsapp.SendAckStatus,
          serverId: r.next() < 0.7 ? r.uuid() : randomAnyText(r),
          serverT: int64(r),
          missing: jids(r),
          extra: jids(r),
          stale: jids(r),
        },
      },
    };
  if (k < 9)
    return {
      frame: {
        case: "receipt",
        value: {
          serverId: randomAnyText(r),
          id: randomAnyText(r),
          from: r.next() < 0.9 ? jid(r) : randomAnyText(r),
          t: int64(r),
        },
      },
    };
  if (k === 9) return { frame: { case: "queueDrained", value: {} } };
  if (k === 10)
    return {
      frame: {
        case: "error",
        value: {
          id: randomAnyText(r),
          code: r.pick([0, 3, 8, 14, -1, 2 ** 31 - 1]),
          reason: randomAnyText(r),
          message: randomAnyText(r),
          retryAfterMs: r.pick(INT64_SAMPLES),
        },
      },
    };
  return { frame: { case: undefined } };
}

const encodeResponse = (init: ResponseInit) => toBinary(ChatResponseSchema, create(ChatResponseSchema, init));

/** Decodes with both; both must throw the same error, or give strictly equal messages. */
function sameMessage(bytes: Uint8Array) {
  const expected = outcome(() => fromBinary(ChatResponseSchema, bytes));
  const got = outcome(() => decodeChatResponse(bytes));
  if (typeof expected === "string") expect(got).toBe(expected);
  else expect(got).toStrictEqual(expected);
}

/** A varint's bytes (below 2^28). */
const varint = (v: number): number[] => (v < 0x80 ? [v] : [(v & 0x7f) | 0x80, ...varint(v >>> 7)]);

/** Appends field `no` (varint 5) to a message's bytes: a field this codec does not know. */
const withUnknownField = (b: Uint8Array, no: number) => Uint8Array.from([...b, ...varint(no << 3), 0x05]);

describe("decodeChatResponse", () => {
  it("equals protobuf-es on random responses of every kind", () => {
    const r = seededRandom(1);
    const kinds = new Set<string | undefined>();
    let handRead = 0;
    for (let i = 0; i < 1000; i++) {
      const init = chatResponse(r);
      kinds.add(init.frame?.case);
      const bytes = encodeResponse(init);
      sameMessage(bytes);
      // grpc-js hands over Buffers: bytes fields are then Buffer views, as with protobuf-es.
      sameMessage(Buffer.from(bytes));
      if (protobufEsCalls(() => decodeChatResponse(bytes)).fromBinary === 0) handRead++;
    }
    expect(kinds.size).toBe(6);
    // Errors, negative int64s and lossy strings fall back; the rest is read by hand.
    expect(handRead).toBeGreaterThan(500);
  });

  it("reads typical frames without protobuf-es, with protobuf-es's values", () => {
    const r = seededRandom(5);
    const typical: ResponseInit[] = [
      {
        frame: {
          case: "message",
          value: {
            serverId: r.uuid(),
            id: r.uuid(),
            from: jid(r),
            kind: whatsapp.MessageKind.MSG,
            ciphertext: randomBytes(r, 300),
            t: BigInt(Date.now()),
            serverT: BigInt(Date.now()),
            urgent: true,
            reportTag: randomBytes(r, 32),
            senderRegistrationId: 4242,
            sequence: 12n,
            thirdPartyProvider: "acme",
            messageRequest: true,
            serverFrankingTag: randomBytes(r, 32),
          },
        },
      },
      {
        frame: {
          case: "sendAck",
          value: {
            id: r.uuid(),
            status: whatsapp.SendAckStatus.DEVICES_CHANGED,
            serverId: r.uuid(),
            serverT: 1n,
            missing: [jid(r), jid(r)],
            extra: [jid(r)],
            stale: [jid(r), jid(r), jid(r)],
          },
        },
      },
      {
        frame: {
          case: "sendAck",
          value: { id: r.uuid(), status: 1, serverId: r.uuid(), serverT: BigInt(Date.now()) },
        },
      },
      {
        frame: {
          case: "receipt",
          value: { serverId: r.uuid(), id: r.uuid(), from: jid(r), t: BigInt(Date.now()) },
        },
      },
      { frame: { case: "queueDrained", value: {} } },
      { frame: { case: undefined } },
    ];
    for (const init of typical) {
      const bytes = Buffer.from(encodeResponse(init));
      let got: unknown;
      expect(protobufEsCalls(() => (got = decodeChatResponse(bytes)))).toEqual({
        toBinary: 0,
        fromBinary: 0,
      });
      expect(got).toStrictEqual(fromBinary(ChatResponseSchema, bytes));
      expect(equals(ChatResponseSchema, got as whatsapp.ChatResponse, create(ChatResponseSchema, init))).toBe(
        true,
      );
    }
    const error = encodeResponse({
      frame: { case: "error", value: { id: "x", code: 8, retryAfterMs: 500n } },
    });
    expect(protobufEsCalls(() => decodeChatResponse(error)).fromBinary).toBe(1);
    sameMessage(error);
  });

  it("decodes unknown fields exactly as protobuf-es does (it keeps them)", () => {
    const r = seededRandom(17);
    const inner = (init: ResponseInit, schema: DescMessage) => {
      const value = (init.frame as { value: object }).value;
      return toBinary(schema, create(schema, value as never));
    };
    const frames: [number, ResponseInit, DescMessage][] = [
      [
        1,
        {
          frame: {
            case: "message",
            value: { ...incomingChat(r), serverId: "s", id: "i", from: "f", thirdPartyProvider: "p" },
          },
        },
        IncomingChatSchema,
      ],
      [2, { frame: { case: "sendAck", value: { id: "a", status: 1, missing: ["m"] } } }, SendAckSchema],
      [3, { frame: { case: "receipt", value: { serverId: "s", t: 5n } } }, ServerReceiptSchema],
      [4, { frame: { case: "queueDrained", value: {} } }, QueueDrainedSchema],
      [5, { frame: { case: "error", value: { id: "e", code: 3 } } }, ChatErrorSchema],
    ];
    for (const [no, init, schema] of frames) {
      for (const unknown of [16, 29, 31, 41, 1000]) {
        const body = withUnknownField(inner(init, schema), unknown);
        const bytes = Uint8Array.from([(no << 3) | 2, ...varint(body.length), ...body]);
        sameMessage(bytes);
        const value = (decodeChatResponse(bytes).frame as { value: { $unknown?: unknown } }).value;
        expect(value.$unknown).toBeDefined();
      }
      // At the top level.
      const top = withUnknownField(encodeResponse(init), 6);
      sameMessage(top);
      expect(decodeChatResponse(top).$unknown).toBeDefined();
    }
  });

  it("decodes odd wire input as protobuf-es does", () => {
    const message = encodeResponse({
      frame: { case: "message", value: { serverId: "s", ciphertext: new Uint8Array([1, 2]) } },
    });
    const ack = encodeResponse({ frame: { case: "sendAck", value: { id: "a", missing: ["m"] } } });
    const cases = [
      Uint8Array.from([...message, ...message]), // the oneof set twice: the messages merge
      Uint8Array.from([...message, ...ack]), // two frames: the last wins
      Uint8Array.from([...ack, ...ack]), // repeated fields of a merged SendAck add up
      Uint8Array.from([0x22, 0x00, 0x22, 0x00]), // queue drained twice
      Uint8Array.from([0x22, 0x02, 0x08, 0x01]), // queue drained with a field
      Uint8Array.from([0x08, 0x01]), // frame 1 as a varint
      Uint8Array.from([0x30, 0x01]), // field 6 (unknown) as a varint
      Uint8Array.from([0x0a, 0x02, 0x08, 0x01]), // server_id as a varint
      Uint8Array.from([0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28]), // a server_id that is not UTF-8
      Uint8Array.from([0x0a, 0x06, 0x0a, 0x04, 0xef, 0xbb, 0xbf, 0x61]), // a server_id with a byte order mark
      Uint8Array.from([0x0a, 0x05, 0x0a, 0x03, 0xef, 0xbf, 0xbd]), // a server_id that is U+FFFD
      Uint8Array.from([0x0a, 0x02, 0x48, 0x02]), // ephemeral = 2
      Uint8Array.from([0x0a, 0x03, 0xf0, 0x01, 0x02]), // message_request = 2
      Uint8Array.from([0x0a, 0x06, 0x28, 0xff, 0xff, 0xff, 0xff, 0x0f]), // kind 2^32 - 1 (int32 -1)
      Uint8Array.from([0x0a, 0x0b, 0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // kind -1
      Uint8Array.from([0x0a, 0x0b, 0x38, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // t = -1
      Uint8Array.from([0x0a, 0x07, 0x68, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]), // a non-minimal uint32
      Uint8Array.from([0x0a, 0x06, 0x68, 0x80, 0x80, 0x80, 0x80, 0x10]), // sender_registration_id 2^32
      Uint8Array.from([0x0a, 0x04, 0x90, 0x80, 0x00, 0x07]), // field 2 tag (varint) in three bytes
      Uint8Array.from([0x8a, 0x80, 0x80, 0x80, 0x80, 0x01, 0x02, 0x08, 0x07]), // a tag over 2^32
      Uint8Array.from([0x8a, 0x80, 0x80, 0x80, 0x80, 0x00, 0x02, 0x08, 0x07]), // a six-byte tag
      Uint8Array.from([0x12, 0x02, 0x10, 0x02]), // status 2
      Uint8Array.from([0x12, 0x04, 0x2a, 0x02, 0xc3, 0x28]), // a missing JID that is not UTF-8
      Uint8Array.from([0x1a, 0x02, 0x20, 0x80]), // a receipt t cut short
      Uint8Array.from([0x0a, 0x03, 0x32, 0x05, 0x0a]), // ciphertext longer than its message
      Uint8Array.from([0x0a, 0x03, 0x0a, 0x01, 0x61, 0x00]), // a message longer than the response
      Uint8Array.from([0x0a, 0x02, 0x00, 0x00]), // a field 0
      Uint8Array.from([0x0b, 0x0c]), // a group
      Uint8Array.from([0x0a, 0x02, 0x0b, 0x0c]), // a group inside
    ];
    for (const bytes of cases) {
      sameMessage(bytes);
      sameMessage(Buffer.from(bytes));
    }
  });

  it("fails or decodes truncated and corrupted input exactly as protobuf-es does", () => {
    const r = seededRandom(99);
    let failures = 0;
    for (let i = 0; i < 1000; i++) {
      const good = encodeResponse(chatResponse(r));
      if (good.length === 0) continue;
      const cut = good.subarray(0, r.int(good.length));
      if (typeof outcome(() => fromBinary(ChatResponseSchema, cut)) === "string") failures++;
      sameMessage(cut);
      const bad = good.slice();
      bad[r.int(bad.length)] = r.int(256);
      sameMessage(bad);
    }
    // Most cuts break a field: the throwing path is covered, not just the decoding one.
    expect(failures).toBeGreaterThan(300);
  });
});

describe("whatsAppChatCodecs", () => {
  it("serves the Chat method", () => {
    expect(whatsAppChatCodecs).toEqual({ chat: { encode: encodeChatRequest, decode: decodeChatResponse } });
  });

  it("knows every field of the messages it writes and reads (update it when they change)", () => {
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
