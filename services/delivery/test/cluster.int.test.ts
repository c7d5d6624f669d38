import { channelForDevice, createRedisClusterFanout } from "@switchboard/fanout";
import { adminClient, startRedisCluster, type RedisCluster } from "@switchboard/testkit/redis-servers";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import {
  clientsFor,
  connectDevice,
  createBackend,
  registerAccount,
  sendTo,
  startInstance,
  text,
} from "./harness.js";

describe("fan-out on Redis Cluster", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  test("two delivery instances on a three-master cluster deliver to each other's streams", async () => {
    const backend = await createBackend();
    const fanouts = await Promise.all(
      [0, 1].map(() => createRedisClusterFanout({ nodes: cluster.nodes, keyPrefix: backend.prefix })),
    );
    onTestFinished(() => Promise.all(fanouts.map((f) => f.close())).then(() => undefined));
    const a = await startInstance(backend, { fanout: fanouts[0] });
    const b = await startInstance(backend, { fanout: fanouts[1] });
    const senders = await Promise.all(Array.from({ length: 3 }, () => registerAccount(a.target)));
    // Enough recipients that their hash-tagged channels land on every shard.
    const recipients = await Promise.all(Array.from({ length: 9 }, () => registerAccount(a.target)));
    const readers = recipients.map((r, i) => connectDevice(i % 2 === 0 ? b.target : a.target, r));
    for (const r of readers) await r.until(() => r.queueEmpty);
    await Promise.all(
      recipients.map((r, i) =>
        sendTo(
          clientsFor(i % 2 === 0 ? a.target : b.target, (senders[i % 3] as { auth: string }).auth),
          [r],
          `hello ${i}`,
        ),
      ),
    );
    for (const [i, r] of readers.entries()) {
      await r.until(() => r.received.length === 1);
      expect(text(r.received[0] as never)).toBe(`hello ${i}`);
    }
    // The recipients' device channels are spread over more than one shard.
    const admin = adminClient({ port: cluster.nodes[0]?.port ?? 0 });
    await admin.connect();
    onTestFinished(() => void admin.disconnect());
    const owners = new Set<number>();
    for (const r of recipients) {
      const slot = (await admin.call(
        "CLUSTER",
        "KEYSLOT",
        channelForDevice({ accountId: r.accountId, deviceId: 1 }, backend.prefix),
      )) as number;
      owners.add(await cluster.ownerPort(slot));
    }
    expect(owners.size).toBeGreaterThan(1);
  });
});
