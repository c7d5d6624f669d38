import { describe, expect, test } from "vitest";
import { createQueueBounds } from "./queue-bounds.js";

const device = (queueSeq: number, deviceId = 1) => ({
  accountId: "00000000-0000-4000-8000-000000000001",
  deviceId,
  registrationId: 1,
  app: 1,
  queueSeq,
});

describe("createQueueBounds", () => {
  test("without a count, the sequence is the bound", () => {
    expect(createQueueBounds().upper(device(25_000))).toBe(25_000);
  });

  test("a count bounds the queue by itself plus the numbers taken since", () => {
    const b = createQueueBounds();
    b.counted(device(25_000), 3);
    expect(b.upper(device(25_000))).toBe(3);
    expect(b.upper(device(25_040))).toBe(43);
    // Never above the sequence itself.
    b.counted(device(10), 10);
    expect(b.upper(device(12))).toBe(12);
  });

  test("a sequence below the counted one (the device registered again) falls back to the sequence", () => {
    const b = createQueueBounds();
    b.counted(device(25_000), 0);
    expect(b.upper(device(7))).toBe(7);
  });

  test("devices are counted apart, and the oldest count is dropped past the size", () => {
    const b = createQueueBounds(2);
    b.counted(device(100, 1), 1);
    b.counted(device(100, 2), 2);
    b.counted(device(100, 3), 3);
    expect(b.upper(device(100, 1))).toBe(100);
    expect(b.upper(device(100, 2))).toBe(2);
    expect(b.upper(device(100, 3))).toBe(3);
  });
});
