import { create, equals, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AddressSchema, App, EnvelopeSchema, EnvelopeType, newAddress, newEnvelope } from "../src/index.js";

const full = {
  id: "0190a3b0-1c2d-7e4f-8a9b-0c1d2e3f4a5b",
  clientMessageId: "mid.42",
  type: EnvelopeType.CIPHERTEXT,
  source: { accountId: "0190a3b0-0000-7000-8000-000000000001", deviceId: 3 },
  sourceApp: App.MESSENGER,
  sourceProviderId: "provider-1",
  sourceRegistrationId: 4242,
  destination: { accountId: "0190a3b0-0000-7000-8000-000000000002", deviceId: 1 },
  destinationApp: App.WHATSAPP,
  content: new Uint8Array([1, 2, 3]),
  serverTimestampMs: 1_700_000_000_123n,
  clientTimestampMs: 1_700_000_000_100n,
  ephemeral: true,
  urgent: true,
  groupId: "0190a3b0-0000-7000-8000-0000000000aa",
  forwarded: true,
  reportTag: new Uint8Array([9, 9]),
  sequence: 77n,
  serverFrankingTag: new Uint8Array([7]),
  messageRequest: true,
};

describe("newEnvelope", () => {
  it("sets every field of the schema, and only those", () => {
    const names = EnvelopeSchema.fields.map((f) => f.localName).sort();
    const keys = (m: object) =>
      Object.keys(m)
        .filter((k) => k !== "$typeName")
        .sort();
    // A field added to envelope.proto must be added to newEnvelope (and to `full` above).
    expect(keys(newEnvelope({}))).toEqual(names);
    expect(keys(full).sort()).toEqual(names);
  });

  it("makes what create(EnvelopeSchema) makes, with every field set", () => {
    const mine = newEnvelope(full);
    const theirs = create(EnvelopeSchema, full);
    expect(mine).toEqual(theirs);
    expect(equals(EnvelopeSchema, mine, theirs)).toBe(true);
    expect(toBinary(EnvelopeSchema, mine)).toEqual(toBinary(EnvelopeSchema, theirs));
  });

  it("gives absent fields their zero values, as create does", () => {
    const mine = newEnvelope({});
    const theirs = create(EnvelopeSchema);
    expect(mine).toEqual(theirs);
    expect(mine.source).toBeUndefined();
    expect(mine.content).toEqual(new Uint8Array(0));
    expect(toBinary(EnvelopeSchema, mine)).toHaveLength(0);
  });

  it("matches create for each field set on its own", () => {
    for (const [name, value] of Object.entries(full)) {
      const init = { [name]: value };
      expect(newEnvelope(init), name).toEqual(create(EnvelopeSchema, init));
    }
  });

  it("builds its addresses as messages, not from the given object", () => {
    const source = create(AddressSchema, { accountId: "a", deviceId: 1 });
    const env = newEnvelope({ source });
    expect(env.source).toEqual(source);
    expect(env.source).not.toBe(source);
    expect(newAddress({})).toEqual(create(AddressSchema));
  });
});
