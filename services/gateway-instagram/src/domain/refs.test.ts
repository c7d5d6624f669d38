import { App } from "@switchboard/proto";
import { describe, expect, it } from "vitest";
import { parseUserRef, refOfHandle } from "./refs.js";
import { directThreadId, isDirectThreadId, isGroupThreadId } from "./thread-id.js";

describe("parseUserRef", () => {
  it("parses the ref forms of every app", () => {
    expect(parseUserRef("Ada.L")).toEqual({
      kind: "handle",
      app: App.INSTAGRAM,
      value: "ada.l",
      providerId: "",
    });
    expect(parseUserRef("instagram:ada_l")).toMatchObject({ app: App.INSTAGRAM, value: "ada_l" });
    expect(parseUserRef("whatsapp:+15551234567")).toMatchObject({ app: App.WHATSAPP, value: "+15551234567" });
    expect(parseUserRef("messenger:100004")).toMatchObject({ app: App.MESSENGER, value: "100004" });
    expect(parseUserRef("acme:alice")).toEqual({
      kind: "handle",
      app: App.THIRD_PARTY,
      value: "alice",
      providerId: "acme",
    });
    expect(parseUserRef("0B9A2C3D-1111-4222-8333-444455556666")).toEqual({
      kind: "account",
      accountId: "0b9a2c3d-1111-4222-8333-444455556666",
    });
  });

  it("rejects malformed refs", () => {
    for (const bad of [
      "",
      "a".repeat(31),
      "ada l",
      "whatsapp:15551234567",
      "messenger:abc",
      "Acme!:x",
      "acme:",
    ])
      expect(parseUserRef(bad)).toBeUndefined();
  });

  it("renders handles as refs that parse back to them", () => {
    const handles = [
      { app: App.INSTAGRAM, value: "ada.l", providerId: "" },
      { app: App.WHATSAPP, value: "+15551234567", providerId: "" },
      { app: App.MESSENGER, value: "100004", providerId: "" },
      { app: App.THIRD_PARTY, value: "alice", providerId: "acme" },
    ];
    for (const h of handles) expect(parseUserRef(refOfHandle(h))).toEqual({ kind: "handle", ...h });
  });
});

describe("directThreadId", () => {
  it("is symmetric, distinct per pair and numeric", () => {
    const a = "00000000-0000-4000-8000-000000000001";
    const b = "00000000-0000-4000-8000-000000000002";
    expect(directThreadId(a, b)).toBe(directThreadId(b, a));
    expect(directThreadId(a, a)).not.toBe(directThreadId(a, b));
    expect(isDirectThreadId(directThreadId(a, b))).toBe(true);
    expect(isGroupThreadId(directThreadId(a, b))).toBe(false);
    expect(isGroupThreadId(a)).toBe(true);
  });

  it("names a pair as it always has (ids are stored in inboxes and known to clients)", () => {
    // The first 16 bytes of SHA-256("ig-direct\0" + a + "\0" + b), computed with createHash.
    const a = "0190a3b0-0000-7000-8000-000000000001";
    const b = "0190a3b0-0000-7000-8000-000000000002";
    expect(directThreadId(b, a)).toBe("94920350774338507450521139199252199776");
  });
});
