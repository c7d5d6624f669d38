import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { ConnectResponseSchema, SendMessageResponseSchema, SentSchema } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import {
  createFrameBatcher,
  encodeResponseBatch,
  encodeSentResponse,
  encodeSentResult,
  MAX_BATCH_BYTES,
  MAX_BATCH_FRAMES,
} from "./connect-wire.js";

describe("encodeSentResult", () => {
  test("matches protobuf-es byte for byte", () => {
    const ids = ["", randomUUID(), "ünïcødé-🙂", "x".repeat(200)];
    const correlations = [0n, 1n, 127n, 128n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n];
    const timestamps = [0, 1, 1_700_000_000_000, -5, Number.MAX_SAFE_INTEGER];
    for (const messageId of ids)
      for (const correlationId of correlations)
        for (const serverTimestampMs of timestamps)
          for (const duplicate of [false, true]) {
            const expected = toBinary(
              ConnectResponseSchema,
              create(ConnectResponseSchema, {
                frame: {
                  case: "sendResult",
                  value: {
                    correlationId,
                    result: {
                      case: "send",
                      value: {
                        result: {
                          case: "sent",
                          value: { messageId, serverTimestampMs: BigInt(serverTimestampMs), duplicate },
                        },
                      },
                    },
                  },
                },
              }),
            );
            const actual = encodeSentResult(correlationId, { messageId, serverTimestampMs, duplicate });
            expect(Buffer.from(actual).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
          }
  });
});

describe("encodeSentResponse", () => {
  test("matches protobuf-es byte for byte, and decodes back to the outcome", () => {
    const ids = ["", randomUUID(), "ünïcødé-🙂", "x".repeat(200)];
    const timestamps = [0, 1, 127, 128, 1_700_000_000_000, -5, Number.MAX_SAFE_INTEGER];
    for (const messageId of ids)
      for (const serverTimestampMs of timestamps)
        for (const duplicate of [false, true]) {
          const sent = { messageId, serverTimestampMs: BigInt(serverTimestampMs), duplicate };
          const expected = toBinary(
            SendMessageResponseSchema,
            create(SendMessageResponseSchema, { result: { case: "sent", value: sent } }),
          );
          const actual = encodeSentResponse({ messageId, serverTimestampMs, duplicate });
          expect(Buffer.from(actual).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
          const back = fromBinary(SendMessageResponseSchema, actual);
          expect(back.result.case).toBe("sent");
          expect(back.result.value).toMatchObject(sent);
        }
  });

  test("the encoders know every field of Sent (update them when it changes)", () => {
    const numbers = (d: DescMessage) => d.fields.map((f) => f.number);
    expect(numbers(SentSchema)).toEqual([1, 2, 3]);
  });
});

describe("encodeResponseBatch and the frame batcher", () => {
  const frame = (n: number, size = 10) =>
    create(ConnectResponseSchema, {
      frame: { case: "queueEmpty", value: { device: { accountId: "x".repeat(size), deviceId: n } } },
    });

  test("wraps encoded frames exactly as protobuf-es encodes a ConnectResponseBatch", () => {
    for (const sizes of [[1], [3, 200, 5], Array.from({ length: 300 }, (_, i) => i)]) {
      const frames = sizes.map((s, i) => frame(i + 1, s));
      const expected = toBinary(
        ConnectResponseSchema,
        create(ConnectResponseSchema, { frame: { case: "batch", value: { frames } } }),
      );
      const got = encodeResponseBatch(frames.map((f) => toBinary(ConnectResponseSchema, f)));
      expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
      const back = fromBinary(ConnectResponseSchema, got);
      expect(back.frame.case === "batch" && back.frame.value.frames.length).toBe(frames.length);
    }
  });

  test("writes one turn's frames as one batch, a lone frame as itself, and splits at the limits", async () => {
    const writes: Uint8Array[] = [];
    const push = createFrameBatcher((b) => writes.push(b));
    const one = toBinary(ConnectResponseSchema, frame(1));
    push(one);
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual([one]);
    writes.length = 0;
    for (let i = 0; i < MAX_BATCH_FRAMES + 10; i++) push(toBinary(ConnectResponseSchema, frame(i + 1)));
    await new Promise((r) => setImmediate(r));
    const decoded = writes.map((w) => fromBinary(ConnectResponseSchema, w));
    expect(decoded.map((d) => (d.frame.case === "batch" ? d.frame.value.frames.length : 1))).toEqual([
      MAX_BATCH_FRAMES,
      10,
    ]);
    const ids = decoded.flatMap((d) =>
      d.frame.case === "batch"
        ? d.frame.value.frames.map((f) =>
            f.frame.case === "queueEmpty" ? f.frame.value.device?.deviceId : 0,
          )
        : [],
    );
    expect(ids).toEqual(Array.from({ length: MAX_BATCH_FRAMES + 10 }, (_, i) => i + 1));
    writes.length = 0;
    const big = toBinary(ConnectResponseSchema, frame(1, MAX_BATCH_BYTES));
    push(one);
    push(big);
    push(one);
    await new Promise((r) => setImmediate(r));
    // The big frame closes the first batch and goes alone; the last frame follows on its own.
    expect(writes.map((w) => w.byteLength)).toEqual([one.byteLength, big.byteLength, one.byteLength]);
  });
});
