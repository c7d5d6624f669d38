import { create, fromBinary } from "@bufbuild/protobuf";
import {
  ConnectResponseSchema,
  EnvelopeSchema,
  EnvelopeType,
  ReceiveMessagesResponseSchema,
} from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import {
  decodeDeviceEvent,
  encodeAckedEvent,
  encodeDisplaceEvent,
  encodeMessageEvent,
  MAX_INLINE_CONTENT_BYTES,
} from "./events.js";

const envelope = (bytes: number) =>
  create(EnvelopeSchema, {
    id: "7f0c1a52-43b1-4a8e-9d76-1d2f3c4b5a69",
    clientMessageId: "c1",
    type: EnvelopeType.CIPHERTEXT,
    destination: { accountId: "a", deviceId: 2 },
    content: new Uint8Array(bytes).fill(7),
    sequence: 42n,
  });

describe("fan-out message events", () => {
  test("are byte-for-byte a ConnectResponse delivery and a ReceiveMessagesResponse envelope", () => {
    const env = envelope(100);
    const wire = encodeMessageEvent(env);
    const asConnect = fromBinary(ConnectResponseSchema, wire);
    expect(asConnect.frame.case).toBe("delivery");
    expect(asConnect.frame.value).toEqual(env);
    const asReceive = fromBinary(ReceiveMessagesResponseSchema, wire);
    expect(asReceive.frame.case).toBe("envelope");
    expect(asReceive.frame.value).toEqual(env);
  });

  test("carry large content as a wake-up only", () => {
    const ev = decodeDeviceEvent(encodeMessageEvent(envelope(MAX_INLINE_CONTENT_BYTES + 1)));
    expect(ev).toMatchObject({ kind: "message", inline: false });
    const small = decodeDeviceEvent(encodeMessageEvent(envelope(10)));
    expect(small).toMatchObject({ kind: "message", inline: true });
  });

  test("decode to their routing fields and pass their own bytes on as the delivery", () => {
    const wire = encodeMessageEvent(envelope(10));
    expect(decodeDeviceEvent(wire)).toEqual({
      kind: "message",
      envelope: {
        id: "7f0c1a52-43b1-4a8e-9d76-1d2f3c4b5a69",
        type: EnvelopeType.CIPHERTEXT,
        contentBytes: 10,
        serverTimestampMs: 0,
        ephemeral: false,
        sequence: 42,
      },
      inline: true,
      wire,
    });
  });
});

describe("fan-out control events", () => {
  test("decode through the full decoder", () => {
    expect(decodeDeviceEvent(encodeDisplaceEvent("s1", 5))).toEqual({
      kind: "displace",
      subscriptionId: "s1",
      createdAtMs: 5,
    });
    expect(decodeDeviceEvent(encodeAckedEvent(["a", "b"]))).toEqual({
      kind: "acked",
      messageIds: ["a", "b"],
    });
    expect(decodeDeviceEvent(new Uint8Array([0xff, 0xff]))).toBeUndefined();
  });
});
