import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@switchboard/errors";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, onTestFinished, test, vi } from "vitest";
import { broadcastChannel, channelForDevice, createRedisFanout, eventsChannel } from "../src/index.js";
import type { Fanout, RedisFanoutOptions } from "../src/index.js";
import { describeFanoutContract } from "./support/fanout-contract.js";
import { Received, bytes, receive } from "./support/received.js";
import { recordingLogger } from "./support/recording-logger.js";
import {
  REDIS_URL,
  adminClient,
  assertRedisReachable,
  startRedisServer,
  uniquePrefix,
} from "./support/redis.js";

let admin: Redis;

beforeAll(async () => {
  await assertRedisReachable();
  admin = adminClient({ url: REDIS_URL });
  await admin.connect();
});

afterAll(() => {
  admin?.disconnect();
});

describeFanoutContract("createRedisFanout (contract)", {
  newBus: async () => {
    const keyPrefix = uniquePrefix();
    return {
      keyPrefix,
      connect: () => createRedisFanout({ url: REDIS_URL, keyPrefix }),
      serverSubscriberCount: async (channel) => {
        const [, count] = (await admin.pubsub("NUMSUB", channel)) as [string, number];
        return count;
      },
    };
  },
});

describe("createRedisFanout", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fanout-redis-"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function ownServer() {
    const server = await startRedisServer({ dir });
    onTestFinished(() => server.kill());
    return server;
  }

  async function open(url: string, options: Partial<RedisFanoutOptions> = {}): Promise<Fanout> {
    const fanout = await createRedisFanout({ url, keyPrefix: uniquePrefix(), ...options });
    onTestFinished(() => fanout.close());
    return fanout;
  }

  async function subscriberCount(url: string, channel: string): Promise<number> {
    const redis = adminClient({ url });
    try {
      await redis.connect();
      const [, count] = (await redis.pubsub("NUMSUB", channel)) as [string, number];
      return count;
    } finally {
      redis.disconnect();
    }
  }

  test("rejects with FANOUT_UNAVAILABLE when Redis is unreachable at start", async () => {
    const server = await ownServer();
    await server.kill();
    await expect(createRedisFanout({ url: server.url })).rejects.toMatchObject({
      code: Code.Unavailable,
      reason: "FANOUT_UNAVAILABLE",
    });
  });

  test("re-subscribes after a Redis restart, reports a resync, and delivers again", async () => {
    const server = await ownServer();
    const keyPrefix = uniquePrefix();
    const { log, messages } = recordingLogger();
    const fanout = await open(server.url, { keyPrefix, log });
    const resyncs = vi.fn();
    fanout.onResync(resyncs);
    const key = { accountId: randomUUID(), deviceId: 1 };
    const dropped = { accountId: key.accountId, deviceId: 2 };
    const received = await receive(fanout, key);
    const droppedWhileDown = await receive(fanout, dropped);
    const broadcasts = new Received();
    await fanout.subscribeBroadcast(broadcasts.handler);
    await fanout.publish([{ key, payload: bytes("before restart") }]);
    await received.waitForText("before restart");

    await server.kill();
    await vi.waitFor(() => expect(messages("warn")).toContain("fanout connection lost"), { interval: 5 });
    await droppedWhileDown.unsubscribe(); // the server already forgot it: nothing to wait for
    await server.start();

    await vi.waitFor(() => expect(resyncs).toHaveBeenCalledTimes(1), { timeout: 20_000, interval: 20 });
    expect(await subscriberCount(server.url, channelForDevice(key, keyPrefix))).toBe(1);
    expect(await subscriberCount(server.url, broadcastChannel(keyPrefix))).toBe(1);
    expect(await subscriberCount(server.url, channelForDevice(dropped, keyPrefix))).toBe(0);
    await fanout.publish([{ key, payload: bytes("after restart") }]);
    await fanout.publishBroadcast(bytes("broadcast after restart"));
    await received.waitForText("after restart");
    await broadcasts.waitForText("broadcast after restart");
    expect(received.texts()).toEqual(["before restart", "after restart"]);

    const other = await open(server.url, { keyPrefix });
    await other.publish([{ key, payload: bytes("from another instance") }]);
    await received.waitForText("from another instance");
    expect(resyncs).toHaveBeenCalledTimes(1);
    expect(messages("warn")).toContain("fanout connection lost");
    expect(messages("info")).toContain("fanout resubscribed");
  });

  test("reconnects and resyncs when the server stops answering heartbeats", async () => {
    const server = await ownServer();
    const keyPrefix = uniquePrefix();
    const { log, entries } = recordingLogger();
    const fanout = await open(server.url, { keyPrefix, log, heartbeatIntervalMs: 100 });
    const resyncs = vi.fn();
    fanout.onResync(resyncs);
    const key = { accountId: randomUUID(), deviceId: 1 };
    const received = await receive(fanout, key);

    const subscriberTimedOut = () =>
      entries.some(({ msg, obj }) => msg === "fanout heartbeat timed out" && obj.role === "subscriber");
    server.pause();
    try {
      await vi.waitFor(() => expect(subscriberTimedOut()).toBe(true), { timeout: 5_000, interval: 20 });
    } finally {
      server.resume();
    }

    await vi.waitFor(() => expect(resyncs).toHaveBeenCalledTimes(1), { timeout: 20_000, interval: 20 });
    await fanout.publish([{ key, payload: bytes("after partition") }]);
    await received.waitForText("after partition");
  });

  test("publishes one call's events as one message on the events channel, in order per device", async () => {
    const keyPrefix = uniquePrefix();
    const fanout = await open(REDIS_URL, { keyPrefix });
    const watcher = adminClient({ url: REDIS_URL });
    onTestFinished(() => watcher.disconnect());
    await watcher.connect();
    const raw: Buffer[] = [];
    watcher.on("messageBuffer", (_channel: Buffer, message: Buffer) => raw.push(message));
    await watcher.subscribe(eventsChannel(keyPrefix));
    const a = { accountId: randomUUID(), deviceId: 1 };
    const b = { accountId: randomUUID(), deviceId: 2 };
    const atA = await receive(fanout, a);
    const atB = await receive(fanout, b);

    await fanout.publish(
      Array.from({ length: 50 }, (_, i) => ({ key: i % 2 === 0 ? a : b, payload: bytes(`m${i}`) })),
    );

    await atA.waitForCount(25);
    await atB.waitForCount(25);
    expect(atA.texts()).toEqual(Array.from({ length: 25 }, (_, i) => `m${2 * i}`));
    expect(atB.texts()).toEqual(Array.from({ length: 25 }, (_, i) => `m${2 * i + 1}`));
    await vi.waitFor(() => expect(raw).toHaveLength(1), { interval: 5 });
  });

  test("still delivers events published per device (publishMode per-device, or older versions)", async () => {
    const keyPrefix = uniquePrefix();
    const fanout = await open(REDIS_URL, { keyPrefix });
    const perDevice = await open(REDIS_URL, { keyPrefix, publishMode: "per-device" });
    const key = { accountId: randomUUID(), deviceId: 1 };
    const received = await receive(fanout, key);
    await perDevice.publish([{ key, payload: bytes("one") }]);
    await admin.publish(channelForDevice(key, keyPrefix), "two");
    await received.waitForCount(2);
    expect(received.texts()).toEqual(["one", "two"]);
  });

  test("rejects publish and subscribe with FANOUT_UNAVAILABLE while Redis is down", async () => {
    const server = await ownServer();
    const fanout = await open(server.url, { timeoutMs: 300 });
    await server.kill();
    const key = { accountId: randomUUID(), deviceId: 1 };
    const unavailable = { code: Code.Unavailable, reason: "FANOUT_UNAVAILABLE" };
    await expect(fanout.publish([{ key, payload: bytes("lost") }])).rejects.toMatchObject(unavailable);
    await expect(fanout.subscribe(key, () => {})).rejects.toMatchObject(unavailable);
  });
});
