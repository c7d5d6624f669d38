import { describe, expect, test } from "vitest";
import { MAX_EVENT_BATCH_BYTES, packEventBatches, unpackEventBatch } from "./event-batch.js";

function unpackAll(batches: Buffer[]) {
  const out: Array<{ channel: string; payload: string }> = [];
  for (const b of batches) {
    expect(
      unpackEventBatch(b, (channel, payload) => out.push({ channel, payload: payload.toString("hex") })),
    ).toBe(true);
  }
  return out;
}

describe("event batches", () => {
  test("round-trips channels (including non-ASCII) and payloads (including empty) in order", () => {
    const messages = [
      { channel: "p:dev:{a}:1", payload: new Uint8Array([1, 2, 3]) },
      { channel: "p:dev:{ünïcødé-账户}:2", payload: new Uint8Array(0) },
      { channel: "p:dev:{a}:1", payload: new Uint8Array([4]) },
    ];
    const batches = packEventBatches(messages);
    expect(batches).toHaveLength(1);
    expect(unpackAll(batches)).toEqual(
      messages.map((m) => ({ channel: m.channel, payload: Buffer.from(m.payload).toString("hex") })),
    );
  });

  test("splits at MAX_EVENT_BATCH_BYTES and keeps the order across batches", () => {
    const payload = new Uint8Array(40 * 1024).fill(9);
    const messages = Array.from({ length: 20 }, (_, i) => ({ channel: `dev:{x}:${i}`, payload }));
    const batches = packEventBatches(messages);
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) expect(b.byteLength).toBeLessThanOrEqual(MAX_EVENT_BATCH_BYTES);
    expect(unpackAll(batches).map((m) => m.channel)).toEqual(messages.map((m) => m.channel));
  });

  test("rejects bytes that are not a batch, delivering nothing past the damage", () => {
    const [batch] = packEventBatches([
      { channel: "a", payload: new Uint8Array([1]) },
      { channel: "b", payload: new Uint8Array([2, 3]) },
    ]);
    const seen: string[] = [];
    expect(unpackEventBatch(Buffer.from([2, 0]), (c) => seen.push(c))).toBe(false);
    expect(unpackEventBatch((batch as Buffer).subarray(0, batch!.byteLength - 1), (c) => seen.push(c))).toBe(
      false,
    );
    expect(seen).toEqual(["a"]);
  });
});
