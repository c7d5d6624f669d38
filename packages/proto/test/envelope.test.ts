import { create, equals, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  AddressSchema,
  App,
  EnvelopeSchema,
  EnvelopeType,
  HandleSchema,
  newAddress,
  newEnvelope,
  newHandle,
  newSendMessageRequest,
  OutgoingMessageSchema,
  SendMessageRequestSchema,
} from "../src/index.js";

/** `mine` is what `create` made (`theirs`): as objects, by protobuf-es's `equals`, and on the wire. */
function expectSameMessage<D extends DescMessage>(schema: D, mine: MessageShape<D>, theirs: MessageShape<D>) {
  expect(mine).toEqual(theirs);
  expect(equals(schema, mine, theirs)).toBe(true);
  expect(toBinary(schema, mine)).toEqual(toBinary(schema, theirs));
}

/** Field names of a message, `$typeName` left out. */
const keys = (m: object) =>
  Object.keys(m)
    .filter((k) => k !== "$typeName")
    .sort();

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
    // A field added to envelope.proto must be added to newEnvelope (and to `full` above).
    expect(keys(newEnvelope({}))).toEqual(names);
    expect(keys(full).sort()).toEqual(names);
  });

  it("makes what create(EnvelopeSchema) makes, with every field set", () => {
    expectSameMessage(EnvelopeSchema, newEnvelope(full), create(EnvelopeSchema, full));
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

describe("newHandle", () => {
  it("makes what create(HandleSchema) makes, for every field and for none", () => {
    expect(keys(newHandle({}))).toEqual(HandleSchema.fields.map((f) => f.localName).sort());
    expect(newHandle({})).toEqual(create(HandleSchema));
    const init = { app: App.THIRD_PARTY, value: "alice@example", providerId: "matrix-bridge" };
    expect(newHandle(init)).toEqual(create(HandleSchema, init));
    expect(keys(init)).toEqual(keys(newHandle({})));
    for (const [name, value] of Object.entries(init)) {
      expect(newHandle({ [name]: value }), name).toEqual(create(HandleSchema, { [name]: value }));
    }
  });
});

describe("newSendMessageRequest", () => {
  const message = {
    deviceId: 2,
    registrationId: 77,
    type: EnvelopeType.PREKEY_MESSAGE,
    content: new Uint8Array([5]),
  };
  const request = {
    sender: { accountId: "0190a3b0-0000-7000-8000-000000000001", deviceId: 3 },
    destinationAccountId: "0190a3b0-0000-7000-8000-000000000002",
    messages: [message, { ...message, deviceId: 4 }],
    clientMessageId: "mid.7",
    clientTimestampMs: 1_700_000_000_100n,
    ephemeral: true,
    urgent: true,
    forwarded: true,
    reportTag: new Uint8Array([9]),
    noDeliveryReceipt: true,
  };

  it("sets every field of the schemas, and only those", () => {
    // A field added to messages.proto must be added to newSendMessageRequest (and to the objects above).
    const names = SendMessageRequestSchema.fields.map((f) => f.localName).sort();
    expect(keys(newSendMessageRequest({}))).toEqual(names);
    expect(keys(request)).toEqual(names);
    const messageNames = OutgoingMessageSchema.fields.map((f) => f.localName).sort();
    expect(keys(newSendMessageRequest({ messages: [{}] }).messages[0] ?? {})).toEqual(messageNames);
    expect(keys(message)).toEqual(messageNames);
  });

  it("makes what create(SendMessageRequestSchema) makes, with every field set and with none", () => {
    expectSameMessage(
      SendMessageRequestSchema,
      newSendMessageRequest(request),
      create(SendMessageRequestSchema, request),
    );
    expect(newSendMessageRequest({})).toEqual(create(SendMessageRequestSchema));
    expect(toBinary(SendMessageRequestSchema, newSendMessageRequest({}))).toHaveLength(0);
    expect(newSendMessageRequest({ messages: [{}] })).toEqual(
      create(SendMessageRequestSchema, { messages: [{}] }),
    );
  });

  it("matches create for each field set on its own", () => {
    for (const [name, value] of Object.entries(request)) {
      const init = { [name]: value };
      expect(newSendMessageRequest(init), name).toEqual(create(SendMessageRequestSchema, init));
    }
    for (const [name, value] of Object.entries(message)) {
      const init = { messages: [{ [name]: value }] };
      expect(newSendMessageRequest(init), name).toEqual(create(SendMessageRequestSchema, init));
    }
  });

  it("builds its sender and messages as messages, not from the given objects", () => {
    const sender = create(AddressSchema, { accountId: "a", deviceId: 1 });
    const made = newSendMessageRequest({ sender, messages: [message] });
    expect(made.sender).toEqual(sender);
    expect(made.sender).not.toBe(sender);
    expect(made.messages[0]).not.toBe(message);
    expect(made.messages[0]?.$typeName).toBe(OutgoingMessageSchema.typeName);
  });
});
