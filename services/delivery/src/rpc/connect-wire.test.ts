import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { ConnectResponseSchema } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { encodeSentResult } from "./connect-wire.js";

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
