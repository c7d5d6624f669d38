import { describe, expect, test } from "vitest";
import { createWriteCoalescer, MAX_HELD_BYTES } from "./write-coalescing.js";

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

function stream(log: string[], name: string) {
  return {
    writableLength: 0,
    cork: () => log.push(`${name} cork`),
    uncork: () => log.push(`${name} uncork`),
  };
}

describe("createWriteCoalescer", () => {
  test("corks a stream once per tick and uncorks it after the tick's writes", async () => {
    const log: string[] = [];
    const hold = createWriteCoalescer();
    const a = stream(log, "a");
    hold(a);
    log.push("a write 1");
    await Promise.resolve();
    hold(a);
    log.push("a write 2");
    expect(log).toEqual(["a cork", "a write 1", "a write 2"]);
    await immediate();
    expect(log).toEqual(["a cork", "a write 1", "a write 2", "a uncork"]);

    log.length = 0;
    hold(a);
    log.push("a write 3");
    await immediate();
    expect(log).toEqual(["a cork", "a write 3", "a uncork"]);
  });

  test("sends what a tick wrote so far once a stream holds MAX_HELD_BYTES", async () => {
    const log: string[] = [];
    const hold = createWriteCoalescer();
    const a = stream(log, "a");
    hold(a);
    a.writableLength = MAX_HELD_BYTES;
    hold(a);
    expect(log).toEqual(["a cork", "a uncork", "a cork"]);
    await immediate();
    expect(log).toEqual(["a cork", "a uncork", "a cork", "a uncork"]);
  });

  test("releases every stream held in the tick", async () => {
    const log: string[] = [];
    const hold = createWriteCoalescer();
    hold(stream(log, "a"));
    const b = stream(log, "b");
    hold(b);
    hold(b);
    await immediate();
    expect(log).toEqual(["a cork", "b cork", "a uncork", "b uncork"]);
  });
});
