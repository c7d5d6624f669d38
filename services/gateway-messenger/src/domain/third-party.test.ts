import { create } from "@bufbuild/protobuf";
import { App, EnvelopeSchema, EnvelopeType } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { envelopeToEvent } from "./translate.js";

const fromProvider = create(EnvelopeSchema, {
  id: "8d7f4f0e-0000-4000-8000-000000000001",
  clientMessageId: "m1",
  type: EnvelopeType.CIPHERTEXT,
  source: { accountId: "8d7f4f0e-0000-4000-8000-0000000000aa", deviceId: 1 },
  sourceApp: App.THIRD_PARTY,
  sourceProviderId: "acme",
  destinationApp: App.MESSENGER,
  content: new Uint8Array([1, 2, 3]),
});

describe("third-party senders in Messenger-style events", () => {
  test("marks the sender's app as provider:<id>, with or without its handle", () => {
    expect(
      envelopeToEvent(fromProvider, { app: App.THIRD_PARTY, providerId: "acme", value: "wile" }).sender,
    ).toEqual({ account_id: fromProvider.source?.accountId, app: "provider:acme", handle: "wile" });
    expect(envelopeToEvent(fromProvider).sender).toEqual({
      account_id: fromProvider.source?.accountId,
      app: "provider:acme",
    });
  });
});
