import { randomUUID } from "node:crypto";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import type * as protobufEsModule from "@bufbuild/protobuf";
import {
  AckFrameSchema,
  AddressSchema,
  ConnectRequestBatchSchema,
  ConnectRequestSchema,
  ConnectResponseBatchSchema,
  ConnectResponseSchema,
  EnvelopeSchema,
  ErrorStatusSchema,
  OutgoingMessageSchema,
  QueueEmptySchema,
  SendFrameSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SendResultSchema,
  SentSchema,
  type ConnectRequest,
  type ConnectResponse,
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
import { describe, expect, test, vi } from "vitest";
import {
  CODEC_MESSAGE_FIELDS,
  decodeConnectResponse,
  decodeSendMessageResponse,
  encodeConnectRequest,
  encodeSendMessageRequest,
} from "../src/connect-codec.js";

// Counts the codec's calls into protobuf-es, to show which frames take the hand-written path.
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const actual = await importOriginal<typeof protobufEsModule>();
  return { ...actual, toBinary: vi.fn(actual.toBinary), fromBinary: vi.fn(actual.fromBinary) };
});

type RequestInit = Parameters<typeof encodeConnectRequest>[0];

const rng = seededRandom;
type Rng = SeededRandom;

const U64 = [0n, 1n, 300n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n];
const ENUMS = [0, 1, 3, 6, 8, 99, 2 ** 31 - 1];

// From the seeded generator (not randomUUID), so a failing run replays.
const u32 = (r: Rng) => (r.next() < 0.7 ? 1 + r.int(6) : r.pick(UINT32_SAMPLES));
/** A typical 64-bit value (70 %) or one of `edges`, as a bigint or a number (protobuf-es takes both). */
const int64 = (r: Rng, edges: readonly bigint[], typical: () => bigint): bigint =>
  bigintOrNumber(r, r.next() < 0.7 ? typical() : r.pick(edges));

const address = (r: Rng) =>
  r.next() < 0.15
    ? undefined
    : initOrMessage(r, AddressSchema, {
        accountId: maybeUnset(r, randomText(r)),
        deviceId: maybeUnset(r, u32(r)),
      });

function requestFrame(r: Rng, inBatch: boolean): RequestInit {
  const k = r.int(inBatch ? 10 : 11);
  if (k < 5) {
    const request =
      r.next() < 0.05
        ? undefined
        : initOrMessage(r, SendMessageRequestSchema, {
            sender: address(r),
            destinationAccountId: maybeUnset(r, randomText(r)),
            messages: maybeUnset(
              r,
              Array.from({ length: r.int(4) }, () =>
                initOrMessage(r, OutgoingMessageSchema, {
                  deviceId: maybeUnset(r, u32(r)),
                  registrationId: maybeUnset(r, r.pick(UINT32_SAMPLES)),
                  type: maybeUnset(r, r.pick(ENUMS)),
                  content: maybeUnset(r, r.next() < 0.1 ? new Uint8Array(0) : randomBytes(r, 300)),
                }),
              ),
            ),
            clientMessageId: maybeUnset(r, randomText(r)),
            clientTimestampMs: maybeUnset(
              r,
              int64(r, INT64_SAMPLES, () => BigInt(Date.now())),
            ),
            ephemeral: maybeUnset(r, r.next() < 0.2),
            urgent: maybeUnset(r, r.next() < 0.5),
            forwarded: maybeUnset(r, r.next() < 0.2),
            reportTag: maybeUnset(r, r.next() < 0.2 ? randomBytes(r, 64) : new Uint8Array(0)),
            noDeliveryReceipt: maybeUnset(r, r.next() < 0.3),
          });
    const value = initOrMessage(r, SendFrameSchema, {
      correlationId: maybeUnset(
        r,
        int64(r, U64, () => BigInt(r.int(1e6))),
      ),
      request,
    });
    return initOrMessage(r, ConnectRequestSchema, { frame: { case: "send", value } });
  }
  if (k < 8) {
    const value = initOrMessage(r, AckFrameSchema, {
      device: address(r),
      messageIds: maybeUnset(
        r,
        Array.from({ length: r.int(5) }, () => randomText(r)),
      ),
    });
    return initOrMessage(r, ConnectRequestSchema, { frame: { case: "ack", value } });
  }
  if (k === 8) return { frame: { case: "subscribe", value: { device: address(r), window: r.int(1000) } } };
  if (k === 9)
    return {
      frame: {
        case: "sendGroup",
        value: {
          correlationId: BigInt(r.int(1000)),
          request: { groupId: r.uuid(), content: randomBytes(r, 40), clientMessageId: randomText(r) },
        },
      },
    };
  const frames = Array.from({ length: r.int(20) }, () => requestFrame(r, true));
  return initOrMessage(r, ConnectRequestSchema, {
    frame: { case: "batch", value: initOrMessage(r, ConnectRequestBatchSchema, { frames }) },
  });
}

/** What protobuf-es does with an init: its bytes, or the message of the error it throws. */
const protobufEs = (init: RequestInit): Uint8Array | string =>
  outcome(() => toBinary(ConnectRequestSchema, create(ConnectRequestSchema, init)));

/**
 * The codec must write the bytes protobuf-es writes, or throw its error; with `roundTrip`, what it
 * wrote must also decode to the message `create` makes.
 */
function sameBytes(init: RequestInit, roundTrip = false) {
  const expected = protobufEs(init);
  const got = outcome(() => encodeConnectRequest(init));
  if (typeof expected === "string") {
    expect(got).toBe(expected);
    return;
  }
  expect(got).toBeInstanceOf(Uint8Array);
  expect(Buffer.from(got as Uint8Array).equals(Buffer.from(expected))).toBe(true);
  if (!roundTrip) return;
  const decoded = fromBinary(ConnectRequestSchema, got as Uint8Array);
  expect(equals(ConnectRequestSchema, decoded, create(ConnectRequestSchema, init))).toBe(true);
}

describe("encodeConnectRequest", () => {
  test("writes what protobuf-es writes for random send, ack, subscribe and group frames, alone and batched", () => {
    let alone = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      const batched = r.next() < 0.8;
      const init: RequestInit = batched
        ? {
            frame: {
              case: "batch",
              value: { frames: Array.from({ length: r.int(30) }, () => requestFrame(r, true)) },
            },
          }
        : requestFrame(r, false);
      if (!batched) alone++;
      sameBytes(init, true);
    }
    // Both branches: a top-level frame on its own in about a fifth of the seeds.
    expect(alone).toBeGreaterThan(40);
  });

  test("writes large batches exactly, however often its size table grows", () => {
    // Ack frames are mostly string lengths: the table of sizes grows while they are recorded.
    const ack = (ids: number): RequestInit => ({
      frame: {
        case: "ack",
        value: {
          device: { accountId: randomUUID(), deviceId: 1 },
          messageIds: Array.from({ length: ids }, () => randomUUID()),
        },
      },
    });
    for (const frames of [5, 9, 17, 33, 65, 129, 257, 513]) {
      const init: RequestInit = {
        frame: { case: "batch", value: { frames: Array.from({ length: frames }, () => ack(7)) } },
      };
      let got: Uint8Array = new Uint8Array(0);
      // Written by the codec itself (a disagreement between its passes would fall back).
      expect(protobufEsCalls(() => (got = encodeConnectRequest(init))).toBinary).toBe(0);
      expect(Buffer.from(got).equals(Buffer.from(protobufEs(init) as Uint8Array))).toBe(true);
    }
  });

  test("writes lone surrogates and byte order marks as protobuf-es does", () => {
    for (const s of LOSSY_STRINGS) {
      const address = { accountId: s, deviceId: 1 };
      sameBytes({
        frame: {
          case: "batch",
          value: {
            frames: [
              {
                frame: {
                  case: "send",
                  value: { request: { sender: address, destinationAccountId: s, clientMessageId: s } },
                },
              },
              { frame: { case: "ack", value: { device: address, messageIds: [s, "", s] } } },
            ],
          },
        },
      });
    }
  });

  test("falls back to protobuf-es for values it cannot write exactly, alone or as one frame of a batch", () => {
    const send = (request: object, correlationId: unknown = 1n): RequestInit =>
      ({ frame: { case: "send", value: { correlationId, request } } }) as RequestInit;
    const outgoing = (m: object) => send({ messages: [{ deviceId: 1, content: new Uint8Array([1]), ...m }] });
    const odd: RequestInit[] = [
      outgoing({ deviceId: -1 }),
      outgoing({ deviceId: 1.5 }),
      outgoing({ deviceId: 2 ** 32 }),
      outgoing({ deviceId: Number.NaN }),
      outgoing({ deviceId: "5" }),
      outgoing({ type: -1 }),
      outgoing({ content: [1, 2, 3] }),
      outgoing({ content: "abc" }),
      send({}, -1n),
      send({}, -1),
      send({}, 2n ** 64n),
      send({}, 1.5),
      send({}, 2 ** 60),
      send({}, "7"),
      send({ clientTimestampMs: 2n ** 63n }),
      send({ clientTimestampMs: -(2 ** 40) }),
      send({ clientTimestampMs: 2 ** 60 }),
      send({ ephemeral: 1 }),
      send({ urgent: "yes" }),
      send({ clientMessageId: 5 }),
      send({ destinationAccountId: null, sender: null, messages: null }),
      send({ messages: [null] }),
      send({ messages: {} }),
      send({ sender: { accountId: "a", deviceId: -2 } }),
      send({ reportTag: new Uint8Array(0) }),
      { frame: { case: "send", value: undefined } } as unknown as RequestInit,
      { frame: { case: "send", value: null } } as unknown as RequestInit,
      { frame: { case: "bogus", value: {} } } as unknown as RequestInit,
      { frame: { case: undefined } },
      {},
      { frame: { case: "ack", value: { messageIds: ["a", 1] } } } as unknown as RequestInit,
      { frame: { case: "ack", value: { messageIds: ["", "\uD800", "ok"] } } },
      { frame: { case: "unsubscribe", value: { device: { accountId: "a", deviceId: 1 } } } },
      // Created messages are used as is: a plain object inside one is not completed by create().
      create(ConnectRequestSchema, {
        frame: { case: "send", value: { correlationId: 3n, request: { clientMessageId: "c" } } },
      }),
      {
        $typeName: "switchboard.delivery.v1.ConnectRequest",
        frame: { case: "send", value: { correlationId: 3n, request: { clientMessageId: "c" } } },
      } as unknown as RequestInit,
      {
        $typeName: "switchboard.delivery.v1.ConnectRequest",
        frame: { case: "ack", value: { device: null, messageIds: [] } },
      } as unknown as RequestInit,
      {
        frame: {
          case: "send",
          value: { $typeName: "switchboard.delivery.v1.SendFrame", correlationId: 0n, request: undefined },
        },
      } as unknown as RequestInit,
      // Unknown fields: written by protobuf-es for a created message, dropped from an init object.
      {
        $typeName: "switchboard.delivery.v1.ConnectRequest",
        frame: { case: "ack", value: create(AckFrameSchema, { messageIds: ["m"] }) },
        $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }],
      } as unknown as RequestInit,
      {
        frame: {
          case: "ack",
          value: { messageIds: ["m"], $unknown: [{ no: 31, wireType: 0, data: new Uint8Array([5]) }] },
        },
      } as unknown as RequestInit,
    ];
    for (const init of odd) {
      sameBytes(init);
      const ok: RequestInit = { frame: { case: "ack", value: { messageIds: ["m1"] } } };
      sameBytes({ frame: { case: "batch", value: { frames: [ok, init, ok] } } });
      sameBytes(
        create(ConnectRequestSchema, {
          frame: { case: "batch", value: { frames: [ok, init as ConnectRequest] } },
        }),
      );
    }
    // A batch item that is not an object: protobuf-es writes an empty frame for it.
    sameBytes({ frame: { case: "batch", value: { frames: [null as unknown as ConnectRequest] } } });
    sameBytes({ frame: { case: "batch", value: { frames: [{}, [] as unknown as ConnectRequest] } } });
    sameBytes({ frame: { case: "batch", value: { frames: null as unknown as [] } } });
    sameBytes(undefined as unknown as RequestInit);
  });
});

function envelope(r: Rng) {
  return {
    id: maybeUnset(r, randomAnyText(r)),
    clientMessageId: maybeUnset(r, randomAnyText(r)),
    type: r.pick(ENUMS),
    source: address(r),
    sourceApp: r.pick([0, 1, 2, 3, 4, 7]),
    sourceProviderId: r.next() < 0.2 ? randomAnyText(r) : "",
    sourceRegistrationId: r.pick(UINT32_SAMPLES),
    destination: address(r),
    destinationApp: r.pick([0, 1, 2, 3]),
    content: r.next() < 0.1 ? new Uint8Array(0) : randomBytes(r, 300),
    serverTimestampMs: r.next() < 0.8 ? BigInt(Date.now()) : r.pick(INT64_SAMPLES),
    clientTimestampMs: r.next() < 0.8 ? BigInt(Date.now()) : r.pick(INT64_SAMPLES),
    ephemeral: r.next() < 0.2,
    urgent: r.next() < 0.5,
    groupId: r.next() < 0.2 ? r.uuid() : "",
    forwarded: r.next() < 0.2,
    reportTag: r.next() < 0.2 ? randomBytes(r, 64) : new Uint8Array(0),
    sequence: r.next() < 0.8 ? BigInt(1 + r.int(1e6)) : r.pick(INT64_SAMPLES),
    serverFrankingTag: r.next() < 0.2 ? randomBytes(r, 32) : new Uint8Array(0),
    messageRequest: r.next() < 0.1,
  };
}

function sendResult(r: Rng): MessageInitShape<typeof SendResultSchema> {
  const correlationId = r.next() < 0.8 ? BigInt(r.int(1e6)) : r.pick(U64);
  const k = r.int(10);
  if (k < 5)
    return {
      correlationId,
      result: {
        case: "send" as const,
        value: {
          result:
            r.next() < 0.9
              ? {
                  case: "sent" as const,
                  value: {
                    messageId: maybeUnset(r, randomAnyText(r)),
                    serverTimestampMs: r.next() < 0.8 ? BigInt(Date.now()) : r.pick(INT64_SAMPLES),
                    duplicate: r.next() < 0.1,
                  },
                }
              : { case: undefined },
        },
      },
    };
  if (k < 7)
    return {
      correlationId,
      result: {
        case: "error" as const,
        value: {
          code: r.pick([0, 3, 8, 14, -1, 2 ** 31 - 1]),
          reason: randomAnyText(r),
          message: randomAnyText(r),
          retryAfterMs: r.pick(UINT32_SAMPLES),
        },
      },
    };
  if (k === 7)
    return {
      correlationId,
      result: {
        case: "send" as const,
        value: {
          result: r.pick<MessageInitShape<typeof SendMessageResponseSchema>["result"]>([
            {
              case: "mismatchedDevices" as const,
              value: { accountId: randomAnyText(r), missingDevices: [1, 2], extraDevices: [3] },
            },
            { case: "staleDevices" as const, value: { accountId: randomAnyText(r), staleDevices: [4] } },
            { case: "recipientNotFound" as const, value: {} },
          ]),
        },
      },
    };
  if (k === 8)
    return {
      correlationId,
      result: { case: "sendGroup" as const, value: { result: { case: "notAMember" as const, value: {} } } },
    };
  return { correlationId, result: { case: undefined } };
}

function responseFrame(r: Rng, inBatch: boolean): ConnectResponse {
  const k = r.int(inBatch ? 10 : 11);
  if (k < 4) return create(ConnectResponseSchema, { frame: { case: "delivery", value: envelope(r) } });
  if (k < 7) return create(ConnectResponseSchema, { frame: { case: "sendResult", value: sendResult(r) } });
  if (k === 7)
    return create(ConnectResponseSchema, { frame: { case: "queueEmpty", value: { device: address(r) } } });
  if (k === 8)
    return create(ConnectResponseSchema, { frame: { case: "displaced", value: { device: address(r) } } });
  if (k === 9)
    return create(ConnectResponseSchema, {
      frame: {
        case: "frameError",
        value: { device: address(r), error: { code: 14, reason: "UNAVAILABLE", message: randomAnyText(r) } },
      },
    });
  return create(ConnectResponseSchema, {
    frame: {
      case: "batch",
      value: { frames: Array.from({ length: r.int(20) }, () => responseFrame(r, true)) },
    },
  });
}

/** Decodes with both; both must throw the same error, or give strictly equal messages. */
function sameMessage(bytes: Uint8Array) {
  let expected: ConnectResponse | undefined;
  let expectedError: string | undefined;
  try {
    expected = fromBinary(ConnectResponseSchema, bytes);
  } catch (err) {
    expectedError = String(err);
  }
  if (expectedError !== undefined) {
    expect(() => decodeConnectResponse(bytes)).toThrow();
    try {
      decodeConnectResponse(bytes);
    } catch (err) {
      expect(String(err)).toBe(expectedError);
    }
    return;
  }
  expect(decodeConnectResponse(bytes)).toStrictEqual(expected);
}

describe("decodeConnectResponse", () => {
  test("equals protobuf-es on random batches mixing every frame kind", () => {
    let alone = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      const batched = r.next() < 0.8;
      const msg = batched
        ? create(ConnectResponseSchema, {
            frame: {
              case: "batch",
              value: { frames: Array.from({ length: r.int(30) }, () => responseFrame(r, true)) },
            },
          })
        : responseFrame(r, false);
      if (!batched) alone++;
      const bytes = toBinary(ConnectResponseSchema, msg);
      sameMessage(bytes);
      // grpc-js hands over Buffers: bytes fields are then Buffer views, as with protobuf-es.
      sameMessage(Buffer.from(bytes));
    }
    expect(alone).toBeGreaterThan(40);
  });

  test("frames with unknown fields, repeated singular messages, odd wire types or odd strings decode as protobuf-es does", () => {
    const delivery = toBinary(
      ConnectResponseSchema,
      create(ConnectResponseSchema, {
        frame: {
          case: "delivery",
          value: {
            id: randomUUID(),
            source: { accountId: "a", deviceId: 1 },
            destination: { accountId: "b" },
          },
        },
      }),
    );
    const unknownField = Uint8Array.from([...delivery, 0xf8, 0x01, 0x05]); // field 31, varint 5
    sameMessage(unknownField);
    expect(decodeConnectResponse(unknownField).$unknown).toBeDefined();
    const cases = [
      unknownField,
      Uint8Array.from([...delivery, ...delivery]), // the oneof set twice: the envelopes merge
      Uint8Array.from([0x0a, 0x04, 0x22, 0x02, 0x08, 0x01, 0x0a, 0x04, 0x22, 0x02, 0x10, 0x02]), // two deliveries
      Uint8Array.from([0x0a, 0x08, 0x22, 0x02, 0x08, 0x01, 0x22, 0x02, 0x10, 0x02]), // source twice
      Uint8Array.from([0x0a, 0x02, 0x22, 0x01]), // envelope field 4 as a varint... cut short
      Uint8Array.from([0x0a, 0x02, 0x20, 0x01]), // envelope field 4 as a varint
      Uint8Array.from([0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28]), // an id that is not UTF-8
      Uint8Array.from([0x0a, 0x06, 0x0a, 0x04, 0xef, 0xbb, 0xbf, 0x61]), // an id with a byte order mark
      Uint8Array.from([0x0a, 0x05, 0x0a, 0x03, 0xef, 0xbf, 0xbd]), // an id that is U+FFFD
      Uint8Array.from([0x0a, 0x02, 0x68, 0x02]), // ephemeral = 2
      Uint8Array.from([0x0a, 0x06, 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f]), // type 2^32 - 1 (int32 -1)
      Uint8Array.from([0x0a, 0x07, 0x38, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]), // a non-minimal uint32
      Uint8Array.from([0x0a, 0x04, 0x90, 0x80, 0x00, 0x07]), // field 2 tag (varint) in three bytes
      Uint8Array.from([0x9a, 0x80, 0x80, 0x80, 0x80, 0x01, 0x02, 0x08, 0x07]), // a tag over 2^32
      Uint8Array.from([0x9a, 0x80, 0x80, 0x80, 0x80, 0x00, 0x02, 0x08, 0x07]), // a six-byte tag
      Uint8Array.from([0x1a, 0x04, 0x12, 0x02, 0x0a, 0x00, 0x1a, 0x04, 0x22, 0x02, 0x08, 0x01]), // two results
      Uint8Array.from([0x1a, 0x06, 0x12, 0x02, 0x0a, 0x00, 0x22, 0x00]), // send and error results
      Uint8Array.from([0x1a, 0x06, 0x12, 0x04, 0x0a, 0x00, 0x0a, 0x00]), // sent twice
      Uint8Array.from([0x1a, 0x04, 0x22, 0x02, 0x08, 0x00]), // error code 0 on the wire
      Uint8Array.from([0x12, 0x04, 0x0a, 0x00, 0x0a, 0x00]), // queue-empty device twice
      Uint8Array.from([0x32, 0x02, 0x12, 0x00]), // a batch with field 2
      Uint8Array.from([0x32, 0x04, 0x0a, 0x02, 0x32, 0x00]), // a batch in a batch
      Uint8Array.from([0x32, 0x05, 0x0a, 0x03, 0x12, 0x00, 0x00]), // a frame with a field 0
      Uint8Array.from([0x32, unknownField.length + 2, 0x0a, unknownField.length, ...unknownField]),
      Uint8Array.from([0x0a, 0x03, 0x22, 0x05, 0x0a]), // a source longer than its envelope
    ];
    for (const bytes of cases) sameMessage(bytes);
  });

  test("truncated and corrupted input fails or decodes exactly as protobuf-es does", () => {
    const r = rng(99);
    for (let i = 0; i < 300; i++) {
      const good = toBinary(ConnectResponseSchema, responseFrame(r, false));
      if (good.length === 0) continue;
      sameMessage(good.subarray(0, r.int(good.length)));
      const bad = good.slice();
      bad[r.int(bad.length)] = r.int(256);
      sameMessage(bad);
    }
  });
});

describe("unary SendMessage codecs", () => {
  test("encodeSendMessageRequest writes what protobuf-es writes for random requests", () => {
    let requests = 0;
    for (let seed = 1; seed <= 600; seed++) {
      const frame = requestFrame(rng(seed), false);
      if (frame.frame?.case !== "send" || !frame.frame.value.request) continue;
      const request = frame.frame.value.request;
      requests++;
      const expected = outcome(() =>
        toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, request)),
      );
      const got = outcome(() => encodeSendMessageRequest(request));
      if (typeof expected === "string") expect(got).toBe(expected);
      else {
        expect(got).toBeInstanceOf(Uint8Array);
        expect(Buffer.from(got as Uint8Array).equals(Buffer.from(expected))).toBe(true);
      }
    }
    expect(requests).toBeGreaterThan(100);
  });

  test("decodeSendMessageResponse equals protobuf-es on random, truncated and corrupted responses", () => {
    const r = rng(11);
    let responses = 0;
    for (let i = 0; i < 600; i++) {
      const result = sendResult(r).result;
      if (result?.case !== "send") continue;
      responses++;
      const good = toBinary(SendMessageResponseSchema, create(SendMessageResponseSchema, result.value));
      const cut = good.subarray(0, r.int(good.length + 1));
      const bad = good.slice();
      if (bad.length > 0) bad[r.int(bad.length)] = r.int(256);
      for (const bytes of [good, Buffer.from(good), cut, bad]) {
        const expected = outcome(() => fromBinary(SendMessageResponseSchema, bytes));
        expect(outcome(() => decodeSendMessageResponse(bytes))).toStrictEqual(expected);
      }
    }
    expect(responses).toBeGreaterThan(100);
    // The common answer takes the hand-written path.
    const sent = toBinary(
      SendMessageResponseSchema,
      create(SendMessageResponseSchema, {
        result: { case: "sent", value: { messageId: randomUUID(), serverTimestampMs: 1n } },
      }),
    );
    expect(protobufEsCalls(() => decodeSendMessageResponse(sent)).fromBinary).toBe(0);
  });
});

describe("connect codec", () => {
  test("writes and reads typical frames without protobuf-es, and falls back per frame in a batch", () => {
    const r = rng(7);
    const send = (id: number): RequestInit => ({
      frame: {
        case: "send",
        value: {
          correlationId: BigInt(id),
          request: {
            sender: { accountId: randomUUID(), deviceId: 1 },
            destinationAccountId: randomUUID(),
            messages: [{ deviceId: 1, registrationId: 4242, type: 1, content: randomBytes(r, 300) }],
            clientMessageId: randomUUID(),
            clientTimestampMs: BigInt(Date.now()),
            urgent: true,
          },
        },
      },
    });
    const ack: RequestInit = {
      frame: { case: "ack", value: { device: { accountId: "a", deviceId: 1 }, messageIds: ["m"] } },
    };
    const subscribe: RequestInit = {
      frame: { case: "subscribe", value: { device: { accountId: "a", deviceId: 1 }, window: 10 } },
    };
    const frames = [send(1), ack, create(ConnectRequestSchema, send(2)), send(3)];
    expect(
      protobufEsCalls(() => encodeConnectRequest({ frame: { case: "batch", value: { frames } } })),
    ).toEqual({
      toBinary: 0,
      fromBinary: 0,
    });
    expect(protobufEsCalls(() => encodeConnectRequest(send(4)))).toEqual({ toBinary: 0, fromBinary: 0 });
    const mixed: RequestInit = {
      frame: { case: "batch", value: { frames: [...frames, subscribe, subscribe] } },
    };
    expect(protobufEsCalls(() => encodeConnectRequest(mixed)).toBinary).toBe(2);
    expect(protobufEsCalls(() => encodeConnectRequest(subscribe)).toBinary).toBe(1);

    const typical = (): ConnectResponse[] => [
      create(ConnectResponseSchema, {
        frame: {
          case: "delivery",
          value: {
            id: randomUUID(),
            clientMessageId: randomUUID(),
            type: 1,
            source: { accountId: randomUUID(), deviceId: 1 },
            sourceApp: 1,
            sourceRegistrationId: 4242,
            destination: { accountId: randomUUID(), deviceId: 2 },
            destinationApp: 2,
            content: randomBytes(r, 300),
            serverTimestampMs: BigInt(Date.now()),
            clientTimestampMs: BigInt(Date.now()),
            urgent: true,
            reportTag: randomBytes(r, 32),
            sequence: 5n,
            serverFrankingTag: randomBytes(r, 32),
          },
        },
      }),
      create(ConnectResponseSchema, {
        frame: {
          case: "sendResult",
          value: {
            correlationId: 9n,
            result: { case: "send", value: { result: { case: "sent", value: { messageId: "m" } } } },
          },
        },
      }),
      create(ConnectResponseSchema, {
        frame: {
          case: "sendResult",
          value: { correlationId: 9n, result: { case: "error", value: { code: 14 } } },
        },
      }),
      create(ConnectResponseSchema, { frame: { case: "queueEmpty", value: { device: { accountId: "a" } } } }),
    ];
    const batch = (frames: ConnectResponse[]) =>
      toBinary(
        ConnectResponseSchema,
        create(ConnectResponseSchema, { frame: { case: "batch", value: { frames } } }),
      );
    const displaced = create(ConnectResponseSchema, { frame: { case: "displaced", value: {} } });
    for (let i = 0; i < 20; i++) {
      const plain = batch(typical());
      expect(protobufEsCalls(() => decodeConnectResponse(plain)).fromBinary).toBe(0);
    }
    const withOdd = batch([...typical(), displaced, ...typical(), displaced]);
    expect(protobufEsCalls(() => decodeConnectResponse(withOdd)).fromBinary).toBe(2);
  });

  test("knows every field of the messages it writes and reads (update it when they change)", () => {
    const schemas = [
      ConnectRequestSchema,
      ConnectRequestBatchSchema,
      SendFrameSchema,
      SendMessageRequestSchema,
      OutgoingMessageSchema,
      AckFrameSchema,
      AddressSchema,
      ConnectResponseSchema,
      ConnectResponseBatchSchema,
      EnvelopeSchema,
      QueueEmptySchema,
      SendResultSchema,
      SendMessageResponseSchema,
      SentSchema,
      ErrorStatusSchema,
    ];
    const numbers = (d: DescMessage) => d.fields.map((f) => f.number);
    expect(Object.fromEntries(schemas.map((s) => [s.typeName, numbers(s)]))).toEqual(CODEC_MESSAGE_FIELDS);
  });
});
