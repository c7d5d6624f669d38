import { randomBytes, randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import { createFranker, frankingCommitment, opensCommitment, type FrankingInput } from "./franking.js";

const input = (over: Partial<FrankingInput> = {}): FrankingInput => ({
  commitment: frankingCommitment(randomBytes(32), Buffer.from("hello")),
  sourceAccountId: randomUUID(),
  sourceDeviceId: 1,
  destinationAccountId: randomUUID(),
  serverTimestampMs: 1_700_000_000_000,
  messageId: randomUUID(),
  ...over,
});

describe("franking", () => {
  test("a commitment opens only with its key and plaintext", () => {
    const key = randomBytes(32);
    const c = frankingCommitment(key, Buffer.from("hello"));
    expect(opensCommitment(c, key, Buffer.from("hello"))).toBe(true);
    expect(opensCommitment(c, key, Buffer.from("hellO"))).toBe(false);
    expect(opensCommitment(c, randomBytes(32), Buffer.from("hello"))).toBe(false);
    expect(opensCommitment(c.subarray(0, 16), key, Buffer.from("hello"))).toBe(false);
  });

  test("a server tag verifies only for the metadata it was made for", () => {
    const f = createFranker(randomBytes(32));
    const base = input();
    const tag = f.tag(base);
    expect(tag.byteLength).toBe(32);
    expect(f.verify(base, tag)).toBe(true);
    for (const changed of [
      { sourceAccountId: randomUUID() },
      { sourceDeviceId: 2 },
      { destinationAccountId: randomUUID() },
      { serverTimestampMs: base.serverTimestampMs + 1 },
      { messageId: randomUUID() },
      { commitment: randomBytes(32) },
    ])
      expect(f.verify({ ...base, ...changed }, tag)).toBe(false);
    expect(createFranker(randomBytes(32)).verify(base, tag)).toBe(false);
  });

  test("rejects a secret shorter than 32 bytes", () => {
    expect(() => createFranker(randomBytes(16))).toThrow(/32 bytes/);
  });
});
