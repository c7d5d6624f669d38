import { create } from "@bufbuild/protobuf";
import { App, EnvelopeSchema, EnvelopeType, HandleSchema } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { envelopeToChatFrame } from "./translate.js";

const fromProvider = create(EnvelopeSchema, {
  id: "8d7f4f0e-0000-4000-8000-000000000001",
  clientMessageId: "m1",
  type: EnvelopeType.CIPHERTEXT,
  source: { accountId: "8d7f4f0e-0000-4000-8000-0000000000aa", deviceId: 1 },
  sourceApp: App.THIRD_PARTY,
  sourceProviderId: "acme",
  destinationApp: App.WHATSAPP,
  content: new Uint8Array([1, 2, 3]),
});

describe("third-party senders in the WhatsApp-style chat stream", () => {
  test("shows a provider user's message with a provider JID and third_party_provider set", () => {
    const frame = envelopeToChatFrame(
      fromProvider,
      create(HandleSchema, { app: App.THIRD_PARTY, providerId: "acme", value: "wile" }),
    );
    expect(frame.case).toBe("message");
    expect(frame.value).toMatchObject({ from: "wile:1@acme.provider", thirdPartyProvider: "acme" });
  });

  test("leaves third_party_provider empty for senders of our apps", () => {
    const frame = envelopeToChatFrame(
      create(EnvelopeSchema, { ...fromProvider, sourceApp: App.MESSENGER, sourceProviderId: "" }),
      create(HandleSchema, { app: App.MESSENGER, value: "100004" }),
    );
    expect(frame.value).toMatchObject({ from: "100004:1@messenger", thirdPartyProvider: "" });
  });
});
