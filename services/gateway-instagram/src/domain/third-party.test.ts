import { create } from "@bufbuild/protobuf";
import { App, EnvelopeSchema, EnvelopeType } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { envelopeToItem } from "./translate.js";

const fromProvider = create(EnvelopeSchema, {
  id: "8d7f4f0e-0000-4000-8000-000000000001",
  clientMessageId: "m1",
  type: EnvelopeType.CIPHERTEXT,
  source: { accountId: "8d7f4f0e-0000-4000-8000-0000000000aa", deviceId: 1 },
  sourceApp: App.THIRD_PARTY,
  sourceProviderId: "acme",
  destination: { accountId: "8d7f4f0e-0000-4000-8000-0000000000bb", deviceId: 1 },
  destinationApp: App.INSTAGRAM,
  content: new Uint8Array([1, 2, 3]),
});

describe("third-party senders in Instagram-style thread items", () => {
  test("marks the sender as third_party with its provider id and ref", () => {
    const item = envelopeToItem(fromProvider, () => "acme:wile");
    expect(item.sender).toMatchObject({
      account_id: fromProvider.source?.accountId,
      app: "third_party",
      provider_id: "acme",
      ref: "acme:wile",
    });
  });
});
