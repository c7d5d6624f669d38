import { describe, expect, test } from "vitest";
import { createRequestIds } from "./request-ids.js";

describe("createRequestIds", () => {
  test("renders req- and 8 base64url characters", () => {
    const next = createRequestIds();
    expect(next()).toMatch(/^req-[A-Za-z0-9_-]{8}$/);
  });

  test("does not repeat ids across buffer refills", () => {
    const next = createRequestIds();
    const ids = new Set<string>();
    for (let i = 0; i < 5_000; i++) ids.add(next());
    expect(ids.size).toBe(5_000);
  });

  test("draws different ids in different generators", () => {
    const a = createRequestIds();
    const b = createRequestIds();
    expect(a()).not.toBe(b());
  });
});
