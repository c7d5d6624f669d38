import { create } from "@bufbuild/protobuf";
import { App, whatsapp } from "@switchboard/proto";
import { describe, expect, it } from "vitest";
import { whatsAppTranslation as t } from "./whatsapp-transport.js";

describe("whatsAppTranslation", () => {
  it("parses and renders JIDs of every app", () => {
    expect(t.parseUserJid("15551234567:2@s.whatsapp.net")).toMatchObject({
      handle: { app: App.WHATSAPP, value: "+15551234567" },
      device: 2,
    });
    expect(t.parseUserJid("100004@messenger")).toMatchObject({
      handle: { app: App.MESSENGER, value: "100004" },
    });
    expect(t.parseUserJid("ada.l:1@instagram")).toMatchObject({ handle: { app: App.INSTAGRAM }, device: 1 });
    expect(t.parseUserJid("a@b:3@acme.provider")).toMatchObject({
      handle: { app: App.THIRD_PARTY, value: "a@b", providerId: "acme" },
      device: 3,
    });
    expect(() => t.parseUserJid("bob@example.com")).toThrow(/invalid JID/);
    const h = t.parseUserJid("alice@acme.provider").handle;
    expect(t.formatUserJid(h, 4)).toBe("alice:4@acme.provider");
  });

  it("maps device-list changes of a group send to accounts", () => {
    const ack = create(whatsapp.SendAckSchema, {
      status: whatsapp.SendAckStatus.DEVICES_CHANGED,
      missing: ["15551234567:2@s.whatsapp.net"],
      stale: ["100004:1@messenger", "15551234567:1@s.whatsapp.net"],
    });
    const ids: Record<string, string> = { "15551234567@s.whatsapp.net": "a", "100004@messenger": "b" };
    expect(t.groupSendAckToOutcome(ack, (jid) => ids[jid] ?? "")).toEqual({
      kind: "mismatched",
      accounts: [
        { accountId: "a", missingDevices: [2], extraDevices: [], staleDevices: [1] },
        { accountId: "b", missingDevices: [], extraDevices: [], staleDevices: [1] },
      ],
    });
  });
});
