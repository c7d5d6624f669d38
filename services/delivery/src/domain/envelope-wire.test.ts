import { randomBytes, randomUUID } from "node:crypto";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectResponseSchema, EnvelopeSchema, ReceiveMessagesResponseSchema } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { encodeMessageEvent } from "../delivery/events.js";
import { FLAG_FORWARDED, FLAG_REQUEST, FLAG_URGENT, queuedMessageToEnvelope } from "./envelope.js";
import { ENVELOPE_FIELDS, encodeEnvelopeRow, peekEnvelopeField1, type EnvelopeRow } from "./envelope-wire.js";
import { createFranker } from "./franking.js";

// A small deterministic PRNG, so a failure names its seed and reproduces.
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function randomRow(seed: number): EnvelopeRow {
  const r = rng(seed);
  const pick = <T>(...xs: T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const int = (max: number) => Math.floor(r() * max);
  const bytes = (max: number) => (r() < 0.3 ? null : new Uint8Array(randomBytes(int(max))));
  const str = () => pick("", randomUUID(), "ünïcødé-账户-🙂", "x".repeat(int(300)));
  const hasSource = r() < 0.8;
  return {
    account_id: pick(randomUUID(), "", "账户"),
    device_id: pick(0, 1, 127, 128, 2 ** 31 - 1, int(1e6)),
    seq: pick(0, 1, 127, 128, 16_383, 16_384, 2 ** 40, Number.MAX_SAFE_INTEGER, int(1e9)),
    message_id: pick(randomUUID(), ""),
    app: pick(0, 1, 2, 3, 4, 200),
    type: pick(0, 1, 2, 3, 5, 8, 1000),
    source_account_id: hasSource ? str() : null,
    source_device_id: hasSource ? pick(0, 1, 300, null) : null,
    source_app: pick(0, 1, 4),
    source_provider_id: pick("", "provider-1", "prøvider"),
    source_registration_id: pick(0, 1, 16_380, 2 ** 32 - 1),
    client_message_id: str(),
    client_timestamp_ms: pick(
      0,
      1,
      -1,
      -1_700_000_000_000,
      1_700_000_000_000 + int(1e9),
      Number.MAX_SAFE_INTEGER,
    ),
    server_timestamp_ms: pick(0, 1_700_000_000_000 + int(1e9), 2 ** 53 - 1),
    expires_at_ms: 0,
    flags: int(64),
    group_id: pick(null, randomUUID()),
    report_tag: bytes(64),
    content: r() < 0.1 ? new Uint8Array(randomBytes(70_000)) : bytes(600),
  };
}

const franker = createFranker(randomBytes(32));

describe("encodeEnvelopeRow", () => {
  test("writes every Envelope field the schema declares (extend it with the proto)", () => {
    expect(EnvelopeSchema.fields.map((f) => f.number)).toEqual(ENVELOPE_FIELDS);
  });

  test("matches protobuf-es byte for byte on 1,500 random rows, with and without franking", () => {
    for (let seed = 1; seed <= 1500; seed++) {
      const row = randomRow(seed);
      const f = seed % 2 === 0 ? franker : undefined;
      const expected = toBinary(EnvelopeSchema, queuedMessageToEnvelope(row, f));
      const actual = encodeEnvelopeRow(row, { franker: f });
      expect({ seed, hex: Buffer.from(actual).toString("hex") }).toEqual({
        seed,
        hex: Buffer.from(expected).toString("hex"),
      });
    }
  });

  test("as field 1 is the fan-out event, the ConnectResponse delivery and the ReceiveMessagesResponse", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const row = randomRow(seed);
      const envelope = queuedMessageToEnvelope(row, franker);
      const wire = encodeEnvelopeRow(row, { franker, asField1: true, maxContentBytes: 16 * 1024 });
      expect(Buffer.from(wire).equals(Buffer.from(encodeMessageEvent(envelope)))).toBe(true);
      // A plain Uint8Array copy, so decoded bytes fields compare equal to the original's.
      const full = new Uint8Array(encodeEnvelopeRow(row, { franker, asField1: true }));
      const connect = fromBinary(ConnectResponseSchema, full);
      expect(connect.frame.case).toBe("delivery");
      expect(connect.frame.value).toEqual(envelope);
      const receive = fromBinary(ReceiveMessagesResponseSchema, full);
      expect(receive.frame.value).toEqual(envelope);
    }
  });

  test("sets the flag fields from the flags column", () => {
    const row = { ...randomRow(7), flags: FLAG_URGENT | FLAG_FORWARDED | FLAG_REQUEST };
    const env = fromBinary(EnvelopeSchema, encodeEnvelopeRow(row));
    expect([env.urgent, env.forwarded, env.messageRequest, env.ephemeral]).toEqual([true, true, true, false]);
  });
});

describe("peekEnvelopeField1", () => {
  test("reads the routing fields protobuf-es decodes", () => {
    for (let seed = 1; seed <= 1000; seed++) {
      const row = randomRow(seed);
      const wire = encodeEnvelopeRow(row, { franker, asField1: true });
      const env = queuedMessageToEnvelope(row, franker);
      expect(peekEnvelopeField1(wire)).toEqual({
        id: env.id,
        type: env.type,
        contentBytes: env.content.byteLength,
        serverTimestampMs: Number(env.serverTimestampMs),
        ephemeral: env.ephemeral,
        sequence: Number(env.sequence),
      });
    }
  });

  test("declines what is not exactly one envelope in field 1", () => {
    const wire = encodeEnvelopeRow(randomRow(3), { asField1: true });
    expect(peekEnvelopeField1(wire.subarray(0, wire.byteLength - 1))).toBeUndefined();
    expect(peekEnvelopeField1(Buffer.concat([wire, Buffer.from([0x10, 1])]))).toBeUndefined();
    expect(peekEnvelopeField1(Buffer.from([0x12, 0]))).toBeUndefined();
    expect(peekEnvelopeField1(new Uint8Array(0))).toBeUndefined();
  });
});
