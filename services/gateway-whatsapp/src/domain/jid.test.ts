import { create } from "@bufbuild/protobuf";
import { isAppError } from "@switchboard/errors";
import { App, HandleSchema } from "@switchboard/proto";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { deviceArb, handleArb, uuid } from "../../test/arbitraries.js";
import { formatGroupJid, formatJid, formatUserJid, parseJid } from "./jid.js";

describe("parseJid", () => {
  test("parses every form of docs/addressing.md", () => {
    expect(parseJid("15551234567@s.whatsapp.net")).toEqual({
      kind: "user",
      handle: create(HandleSchema, { app: App.WHATSAPP, value: "+15551234567" }),
    });
    expect(parseJid("15551234567:2@s.whatsapp.net")).toMatchObject({ device: 2 });
    expect(parseJid("100004@messenger")).toMatchObject({ handle: { app: App.MESSENGER, value: "100004" } });
    expect(parseJid("100004:1@messenger")).toMatchObject({ device: 1 });
    expect(parseJid("ada.l@instagram")).toMatchObject({ handle: { app: App.INSTAGRAM, value: "ada.l" } });
    expect(parseJid("alice@acme.provider")).toMatchObject({
      handle: { app: App.THIRD_PARTY, value: "alice", providerId: "acme" },
    });
    expect(parseJid("a@b.c:3@acme.provider")).toMatchObject({
      handle: { app: App.THIRD_PARTY, value: "a@b.c", providerId: "acme" },
      device: 3,
    });
    expect(parseJid("0b0e6f4e-8f43-4c5f-9a53-2f3b1f2f6a10@g.us")).toEqual({
      kind: "group",
      groupId: "0b0e6f4e-8f43-4c5f-9a53-2f3b1f2f6a10",
    });
  });

  test("lower-cases usernames and third-party handles", () => {
    expect(parseJid("Ada.L@instagram")).toMatchObject({ handle: { value: "ada.l" } });
    expect(parseJid("Alice@ACME.provider")).toMatchObject({ handle: { value: "alice", providerId: "acme" } });
  });

  test.each([
    "",
    "15551234567",
    "@s.whatsapp.net",
    "+15551234567@s.whatsapp.net",
    "0551234567@s.whatsapp.net",
    "15551234567:0@s.whatsapp.net",
    "15551234567:02@s.whatsapp.net",
    "abc@messenger",
    ".ada@instagram",
    "ada..l@instagram",
    "alice@-acme.provider",
    "alice@example.com",
    "not-a-uuid@g.us",
  ])("rejects %j with INVALID_JID", (jid) => {
    let err: unknown;
    try {
      parseJid(jid);
    } catch (e) {
      err = e;
    }
    expect(isAppError(err) && err.reason).toBe("INVALID_JID");
  });

  test("inverts formatJid for every user, device and group", () => {
    fc.assert(
      fc.property(handleArb, fc.option(deviceArb, { nil: undefined }), (handle, device) => {
        const jid = formatUserJid(handle, device);
        const parsed = parseJid(jid);
        expect(parsed).toEqual(
          device === undefined ? { kind: "user", handle } : { kind: "user", handle, device },
        );
        expect(formatJid(parsed)).toBe(jid);
      }),
    );
    fc.assert(
      fc.property(uuid, (id) => {
        expect(parseJid(formatGroupJid(id))).toEqual({ kind: "group", groupId: id });
      }),
    );
  });
});
