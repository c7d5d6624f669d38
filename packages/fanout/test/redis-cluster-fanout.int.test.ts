import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, onTestFinished, test, vi } from "vitest";
import { keySlot } from "../src/key-slot.js";
import { channelForDevice, createRedisClusterFanout } from "../src/index.js";
import type { DeviceKey, Fanout } from "../src/index.js";
import { describeFanoutContract } from "./support/fanout-contract.js";
import { bytes, receive } from "./support/received.js";
import { adminClient, startRedisCluster, uniquePrefix } from "./support/redis.js";
import type { RedisCluster } from "./support/redis.js";

let cluster: RedisCluster | undefined;

beforeAll(async () => {
  cluster = await startRedisCluster();
});

afterAll(async () => {
  await cluster?.stop();
});

function runningCluster(): RedisCluster {
  if (cluster === undefined) throw new Error("the cluster did not start");
  return cluster;
}

/** Run one command on the node listening on `port`. */
async function onNode(port: number, ...args: [string, ...Array<string | number>]): Promise<unknown> {
  const redis = adminClient({ port });
  try {
    await redis.connect();
    return await redis.call(...args);
  } finally {
    redis.disconnect();
  }
}

async function shardSubscriberCounts(channel: string): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const server of runningCluster().servers) {
    const [, count] = (await onNode(server.port, "PUBSUB", "SHARDNUMSUB", channel)) as [string, number];
    counts.set(server.port, count);
  }
  return counts;
}

describeFanoutContract("createRedisClusterFanout (contract)", {
  newBus: async () => {
    const keyPrefix = uniquePrefix();
    return {
      keyPrefix,
      connect: () => createRedisClusterFanout({ nodes: runningCluster().nodes, keyPrefix }),
      serverSubscriberCount: async (channel) => {
        const counts = await shardSubscriberCounts(channel);
        return [...counts.values()].reduce((sum, count) => sum + count, 0);
      },
    };
  },
});

describe("createRedisClusterFanout", () => {
  async function open(keyPrefix: string): Promise<Fanout> {
    const fanout = await createRedisClusterFanout({ nodes: runningCluster().nodes, keyPrefix });
    onTestFinished(() => fanout.close());
    return fanout;
  }

  /** One device key per master: accounts whose hash tag lands on each of the three shards. */
  async function keysOnEveryShard(keyPrefix: string): Promise<Array<{ key: DeviceKey; port: number }>> {
    const byPort = new Map<number, { key: DeviceKey; port: number }>();
    while (byPort.size < 3) {
      const key = { accountId: randomUUID(), deviceId: 1 };
      const port = await runningCluster().ownerPort(keySlot(channelForDevice(key, keyPrefix)));
      if (!byPort.has(port)) byPort.set(port, { key, port });
    }
    return [...byPort.values()];
  }

  test("computes the slots the cluster computes", async () => {
    const [first] = runningCluster().servers;
    if (first === undefined) throw new Error("no server");
    const keyPrefix = uniquePrefix();
    const channels = [
      channelForDevice({ accountId: randomUUID(), deviceId: 1 }, keyPrefix),
      channelForDevice({ accountId: "ünïcødé-账户", deviceId: 2 }, keyPrefix),
      channelForDevice({ accountId: "a}b", deviceId: 3 }, keyPrefix),
      `${keyPrefix}broadcast`,
      "plain",
      "{}empty-tag",
    ];
    for (const channel of channels) {
      expect(keySlot(channel), channel).toBe(await onNode(first.port, "CLUSTER", "KEYSLOT", channel));
    }
  });

  test("delivers across instances for accounts on different shards, subscribed on their own shard", async () => {
    const keyPrefix = uniquePrefix();
    const a = await open(keyPrefix);
    const b = await open(keyPrefix);
    const targets = await keysOnEveryShard(keyPrefix);
    expect(new Set(targets.map(({ port }) => port)).size).toBe(3);

    const onA = await Promise.all(targets.map(({ key }) => receive(a, key)));
    const onB = await Promise.all(targets.map(({ key }) => receive(b, key)));
    for (const { key, port } of targets) {
      const counts = await shardSubscriberCounts(channelForDevice(key, keyPrefix));
      for (const [nodePort, count] of counts) expect(count).toBe(nodePort === port ? 2 : 0);
    }

    // One publish call, interleaving the three shards.
    const events = Array.from({ length: 30 }, (_, i) => {
      const target = targets[i % 3];
      if (target === undefined) throw new Error("unreachable");
      return { key: target.key, payload: bytes(`a${i}`) };
    });
    await a.publish(events);
    await b.publish(targets.map(({ key }, i) => ({ key, payload: bytes(`b${i}`) })));

    for (const [k, received] of [...onA.entries(), ...onB.entries()]) {
      await received.waitForCount(11);
      const i = k % 3;
      expect(received.texts()).toEqual([...Array.from({ length: 10 }, (_, n) => `a${n * 3 + i}`), `b${i}`]);
    }
  });

  test("re-subscribes after a shard restarts, reports a resync, and delivers again", async () => {
    const keyPrefix = uniquePrefix();
    const subscriber = await open(keyPrefix);
    const publisher = await open(keyPrefix);
    const resyncs = vi.fn();
    subscriber.onResync(resyncs);
    const targets = await keysOnEveryShard(keyPrefix);
    const receivers = await Promise.all(targets.map(({ key }) => receive(subscriber, key)));
    await publisher.publish(targets.map(({ key }) => ({ key, payload: bytes("before") })));
    await Promise.all(receivers.map((received) => received.waitForText("before")));

    const [restarted] = targets;
    const server = runningCluster().servers.find(({ port }) => port === restarted?.port);
    if (restarted === undefined || server === undefined) throw new Error("no shard to restart");
    await server.kill();
    await server.start();
    await runningCluster().waitUntilHealthy();

    await vi.waitFor(() => expect(resyncs).toHaveBeenCalled(), { timeout: 30_000, interval: 50 });
    const counts = await shardSubscriberCounts(channelForDevice(restarted.key, keyPrefix));
    expect(counts.get(restarted.port)).toBe(1);

    // The publisher's own connection to the restarted node may still be coming back: retry.
    await vi.waitFor(() => publisher.publish(targets.map(({ key }) => ({ key, payload: bytes("after") }))), {
      timeout: 20_000,
      interval: 200,
    });
    await Promise.all(receivers.map((received) => received.waitForText("after")));
  });
});
