import { Cluster, Redis } from "ioredis";
import { ChannelFanout } from "./channel-fanout.js";
import type { ChannelMessage } from "./channel-fanout.js";
import { ChannelSubscriptions } from "./channel-subscriptions.js";
import { fanoutUnavailable } from "./fanout-errors.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_TIMEOUT_MS } from "./fanout.js";
import type { Fanout, FanoutLogger } from "./fanout.js";
import { keySlot } from "./key-slot.js";
import { checkKeyPrefix } from "./keys.js";
import { throwPipelineError, toBuffer, watchConnection } from "./redis-connection.js";

/** Options of {@link createRedisClusterFanout}. */
export interface RedisClusterFanoutOptions {
  /** Some of the cluster's nodes; the rest are discovered. */
  nodes: Array<{ host: string; port: number }>;
  /** Prepended to every channel (see keys.ts), e.g. to isolate tests sharing one cluster. Default "". */
  keyPrefix?: string;
  /** How long `publish` and `subscribe` wait for Redis before rejecting with UNAVAILABLE. Default 5000. */
  timeoutMs?: number;
  /** How often the slot map is re-read to notice topology changes, in ms. Default 5000. */
  slotsRefreshIntervalMs?: number;
  /** How often the subscriber connections PING their node to notice a silent partition, in ms. Default 5000. */
  heartbeatIntervalMs?: number;
  /** Receives connection, topology, resync and handler-failure events. */
  log?: FanoutLogger;
}

/**
 * Connect a {@link Fanout} over Redis Cluster sharded pub/sub (SSUBSCRIBE/SPUBLISH). A device's channel
 * is hash-tagged by account, so it lives on one shard: publishing costs one node, not the whole
 * cluster bus. Publishes go through an ioredis `Cluster` (one pipeline per node); subscriptions go
 * through one subscriber connection per master that owns a subscribed channel. When a subscriber
 * connection comes back, a slot moves (MOVED, SUNSUBSCRIBE from the server, or a changed slot map),
 * channels are re-subscribed on their current owner and the resync listeners run.
 * Rejects with UNAVAILABLE `FANOUT_UNAVAILABLE` if the cluster cannot be reached at start.
 */
export async function createRedisClusterFanout(options: RedisClusterFanoutOptions): Promise<Fanout> {
  const keyPrefix = checkKeyPrefix(options.keyPrefix ?? "");
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { log } = options;
  const cluster = new Cluster(options.nodes, {
    lazyConnect: true,
    slotsRefreshInterval: options.slotsRefreshIntervalMs ?? 5_000,
    redisOptions: { connectionName: "switchboard-fanout-pub" },
  });
  const nodeList = options.nodes.map(({ host, port }) => `${host}:${port}`).join(",");
  let closing = false;
  cluster.on("error", (err: unknown) => {
    if (!closing) log?.warn({ err, nodes: nodeList }, "fanout cluster error");
  });
  cluster.on("node error", (err: unknown, node: string) => {
    if (!closing) log?.debug({ err, node }, "fanout cluster node error");
  });

  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const shards = new ShardSubscribers(cluster, { timeoutMs, heartbeatIntervalMs }, log, () => closing);
  try {
    await cluster.connect();
  } catch (err) {
    closing = true;
    cluster.disconnect();
    throw fanoutUnavailable(`cannot connect to Redis Cluster at ${nodeList}`, err);
  }
  log?.info({ nodes: nodeList, keyPrefix }, "fanout connected");

  return new ChannelFanout(
    keyPrefix,
    shards.subscriptions,
    {
      publish: (messages) => publishSharded(cluster, messages),
      close: async () => {
        closing = true;
        shards.close();
        try {
          await cluster.quit();
        } catch {
          // Nodes that are already gone cannot say goodbye; disconnect releases everything.
          cluster.disconnect();
        }
      },
    },
    timeoutMs,
  );
}

/** SPUBLISH each message, one pipeline per group of slots served by the same node, all in parallel. */
async function publishSharded(cluster: Cluster, messages: ReadonlyArray<ChannelMessage>): Promise<void> {
  const [single] = messages;
  if (messages.length === 1 && single !== undefined) {
    await cluster.spublish(single.channel, toBuffer(single.payload));
    return;
  }
  const byNode = new Map<string, ChannelMessage[]>();
  for (const message of messages) {
    const slot = keySlot(message.channel);
    // Until the slot map is known, one pipeline per slot is still valid for ioredis.
    const group = cluster.slots[slot]?.join(";") ?? `slot ${slot}`;
    const batch = byNode.get(group);
    if (batch === undefined) byNode.set(group, [message]);
    else batch.push(message);
  }
  await Promise.all(
    [...byNode.values()].map(async (batch) => {
      const pipeline = cluster.pipeline();
      for (const { channel, payload } of batch) pipeline.spublish(channel, toBuffer(payload));
      throwPipelineError(await pipeline.exec());
    }),
  );
}

interface ShardConnection {
  readonly redis: Redis;
  closing: boolean;
}

/**
 * The subscribing half of the cluster fanout: one connection per master that owns a subscribed
 * channel, which channel is subscribed on which master, and the reactions to topology changes.
 */
class ShardSubscribers {
  readonly subscriptions: ChannelSubscriptions;
  private readonly connections = new Map<string, ShardConnection>();
  /** Channel → the master (`host:port`) it is subscribed on, and its slot. */
  private readonly subscribedOn = new Map<string, { node: string; slot: number }>();
  private closed = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly timing: { timeoutMs: number; heartbeatIntervalMs: number },
    private readonly log: FanoutLogger | undefined,
    private readonly isClosing: () => boolean,
  ) {
    this.subscriptions = new ChannelSubscriptions(
      (channel, wanted) => this.apply(channel, wanted),
      timing.timeoutMs,
      log,
    );
    cluster.on("refresh", () => this.onSlotsRefreshed());
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) {
      connection.closing = true;
      connection.redis.disconnect();
    }
    this.connections.clear();
    this.subscribedOn.clear();
  }

  private async apply(channel: string, wanted: boolean): Promise<void> {
    if (this.closed) return;
    const current = this.subscribedOn.get(channel)?.node;
    if (!wanted) {
      if (current === undefined) return;
      this.subscribedOn.delete(channel);
      await this.connections.get(current)?.redis.sunsubscribe(channel);
      return;
    }
    const slot = keySlot(channel);
    for (let attempt = 1; ; attempt++) {
      const owner = await this.ownerOf(slot);
      if (owner === current) return;
      if (current !== undefined) {
        this.subscribedOn.delete(channel);
        // The old owner lost the slot (or the connection): its SUNSUBSCRIBE is a courtesy.
        this.connections
          .get(current)
          ?.redis.sunsubscribe(channel)
          .catch((err: unknown) => this.log?.debug({ err, channel }, "fanout stale sunsubscribe failed"));
      }
      try {
        await this.connection(owner).ssubscribe(channel);
        this.subscribedOn.set(channel, { node: owner, slot });
        return;
      } catch (err) {
        if (attempt >= 2 || !isMovedError(err)) throw err;
        await this.refreshSlots();
      }
    }
  }

  /** The master serving `slot`, refreshing the slot map once if it does not know. */
  private async ownerOf(slot: number): Promise<string> {
    let owner = this.cluster.slots[slot]?.[0];
    if (owner === undefined) {
      await this.refreshSlots();
      owner = this.cluster.slots[slot]?.[0];
    }
    if (owner === undefined) throw fanoutUnavailable(`no Redis Cluster node serves slot ${slot}`);
    return owner;
  }

  private refreshSlots(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.cluster.refreshSlotsCache((err) => (err ? reject(err) : resolve()));
    });
  }

  /** The subscriber connection to master `node` (`host:port`), opened on first use. */
  private connection(node: string): Redis {
    const existing = this.connections.get(node);
    if (existing !== undefined) return existing.redis;
    const separator = node.lastIndexOf(":");
    const redis = new Redis({
      host: node.slice(0, separator),
      port: Number(node.slice(separator + 1)),
      autoResubscribe: false,
      connectionName: "switchboard-fanout-ssub",
    });
    const connection: ShardConnection = { redis, closing: false };
    this.connections.set(node, connection);
    redis.on("smessageBuffer", (channel: Buffer, message: Buffer) => {
      this.subscriptions.dispatch(channel.toString(), message);
    });
    // ioredis reports the server's unsolicited SUNSUBSCRIBE (the slot moved away) as "moved".
    redis.on("moved", () => {
      this.log?.info({ node }, "fanout shard channels moved");
      this.forgetChannelsOn(node);
      void this.refreshSlots()
        .catch((err: unknown) => this.log?.debug({ err }, "fanout slots refresh failed"))
        .finally(() => this.subscriptions.requestResync());
    });
    watchConnection(redis, {
      node,
      role: "shard-subscriber",
      log: this.log,
      isClosing: () => connection.closing || this.isClosing(),
      heartbeatIntervalMs: this.timing.heartbeatIntervalMs,
      onLost: () => {
        this.forgetChannelsOn(node);
        this.subscriptions.connectionLost();
      },
      onRestored: () => this.subscriptions.requestResync(),
    });
    return redis;
  }

  private forgetChannelsOn(node: string): void {
    for (const [channel, subscription] of this.subscribedOn) {
      if (subscription.node === node) this.subscribedOn.delete(channel);
    }
  }

  /** After each slot map refresh: move channels whose slot changed owner and drop unused connections. */
  private onSlotsRefreshed(): void {
    if (this.closed) return;
    const masters = new Set<string>();
    for (const nodes of this.cluster.slots) {
      const master = nodes?.[0];
      if (master !== undefined) masters.add(master);
    }
    let moved = false;
    for (const [node, connection] of this.connections) {
      if (masters.has(node)) continue;
      connection.closing = true;
      connection.redis.disconnect();
      this.connections.delete(node);
      this.forgetChannelsOn(node);
      moved = true;
    }
    for (const { node, slot } of this.subscribedOn.values()) {
      if (this.cluster.slots[slot]?.[0] !== node) {
        moved = true;
        break;
      }
    }
    if (moved) {
      this.log?.info({ masterCount: masters.size }, "fanout cluster topology changed");
      this.subscriptions.requestResync();
    }
  }
}

function isMovedError(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith("MOVED ");
}
