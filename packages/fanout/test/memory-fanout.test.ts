import { randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import { createMemoryFanout } from "../src/index.js";
import { describeFanoutContract } from "./support/fanout-contract.js";
import { bytes, receive } from "./support/received.js";

describeFanoutContract("createMemoryFanout (contract)", {
  newBus: async () => {
    const fanout = createMemoryFanout();
    return { keyPrefix: "", connect: async () => fanout };
  },
});

describe("createMemoryFanout", () => {
  test("delivers after publish returns, never inside it", async () => {
    const fanout = createMemoryFanout();
    const key = { accountId: randomUUID(), deviceId: 1 };
    const received = await receive(fanout, key);
    const published = fanout.publish([{ key, payload: bytes("later") }]);
    expect(received.payloads).toHaveLength(0);
    await published;
    await received.waitForText("later");
    await fanout.close();
  });

  test("copies payloads at publish time", async () => {
    const fanout = createMemoryFanout();
    const key = { accountId: randomUUID(), deviceId: 1 };
    const received = await receive(fanout, key);
    const payload = bytes("original");
    const published = fanout.publish([{ key, payload }]);
    payload.fill(0);
    await published;
    await received.waitForCount(1);
    expect(received.texts()).toEqual(["original"]);
    await fanout.close();
  });

  test("keeps buses of separate instances apart", async () => {
    const a = createMemoryFanout();
    const b = createMemoryFanout();
    const key = { accountId: randomUUID(), deviceId: 1 };
    const onA = await receive(a, key);
    await b.publish([{ key, payload: bytes("b only") }]);
    await a.publish([{ key, payload: bytes("a only") }]);
    await onA.waitForCount(1);
    expect(onA.texts()).toEqual(["a only"]);
    await Promise.all([a.close(), b.close()]);
  });
});
