import { describe, expect, test } from "vitest";
import { keySlot } from "./key-slot.js";

describe("keySlot", () => {
  test("matches the slots Redis documents", () => {
    expect(keySlot("foo")).toBe(12182);
    expect(keySlot("123456789")).toBe(0x31c3);
    expect(keySlot("")).toBe(0);
  });

  test("hashes only the first non-empty hash tag", () => {
    expect(keySlot("{user1000}.following")).toBe(keySlot("user1000"));
    expect(keySlot("dev:{a1}:1")).toBe(keySlot("dev:{a1}:2"));
    expect(keySlot("foo{}{bar}")).not.toBe(keySlot("bar"));
    expect(keySlot("foo{{bar}}zap")).toBe(keySlot("{bar"));
  });
});
