import { Redis } from "ioredis";
import type { RedisOptions } from "ioredis";
import { ChannelFanout } from "./channel-fanout.js";
import type { ChannelMessage } from "./channel-fanout.js";
import { ChannelSubscriptions } from "./channel-subscriptions.js";
import { fanoutUnavailable } from "./fanout-errors.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_TIMEOUT_MS } from "./fanout.js";
import type { Fanout, FanoutLogger } from "./fanout.js";
import { checkKeyPrefix } from "./keys.js";
import { closeConnection, throwPipelineError, toBuffer, watchConnection } from "./redis-connection.js";

/** Options of {@link createRedisFanout}. */
export interface RedisFanoutOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  url: string;
  /** Prepended to every channel (see keys.ts), e.g. to isolate tests sharing one Redis. Default "". */
  keyPrefix?: string;
  /** How long `publish` and `subscribe` wait for Redis before rejecting with UNAVAILABLE. Default 5000. */
  timeoutMs?: number;
  /** How often both connections PING Redis to notice a silent partition, in ms. Default 5000. */
  heartbeatIntervalMs?: number;
  /** Receives connection, resync and handler-failure events. */
  log?: FanoutLogger;
}

/**
 * Connect a {@link Fanout} over classic Redis pub/sub (SUBSCRIBE/PUBLISH) with two connections: one
 * subscriber, one publisher (a subscribed connection cannot publish). Both reconnect with back-off;
 * after the subscriber reconnects, every active channel is re-subscribed and the resync listeners run.
 * Rejects with UNAVAILABLE `FANOUT_UNAVAILABLE` if Redis cannot be reached at start.
 */
export async function createRedisFanout(options: RedisFanoutOptions): Promise<Fanout> {
  const keyPrefix = checkKeyPrefix(options.keyPrefix ?? "");
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const { log } = options;
  // Resubscription is ours (after "ready", before the resync listeners), not ioredis's.
  const common: RedisOptions = { lazyConnect: true, autoResubscribe: false };
  const subscriber = new Redis(options.url, { ...common, connectionName: "switchboard-fanout-sub" });
  const publisher = new Redis(options.url, { ...common, connectionName: "switchboard-fanout-pub" });
  const node = `${subscriber.options.host ?? "?"}:${subscriber.options.port ?? "?"}`;
  let closing = false;
  const isClosing = () => closing;

  const subscribed = new Set<string>();
  const subscriptions = new ChannelSubscriptions(
    async (channel, wanted) => {
      if (wanted && !subscribed.has(channel)) {
        await subscriber.subscribe(channel);
        subscribed.add(channel);
      } else if (!wanted && subscribed.delete(channel)) {
        await subscriber.unsubscribe(channel);
      }
    },
    timeoutMs,
    log,
  );
  subscriber.on("messageBuffer", (channel: Buffer, message: Buffer) => {
    subscriptions.dispatch(channel.toString(), message);
  });
  watchConnection(subscriber, {
    node,
    role: "subscriber",
    log,
    isClosing,
    heartbeatIntervalMs,
    onLost: () => {
      subscribed.clear();
      subscriptions.connectionLost();
    },
    onRestored: () => subscriptions.requestResync(),
  });
  watchConnection(publisher, { node, role: "publisher", log, isClosing, heartbeatIntervalMs });

  try {
    await Promise.all([subscriber.connect(), publisher.connect()]);
  } catch (err) {
    closing = true;
    subscriber.disconnect();
    publisher.disconnect();
    throw fanoutUnavailable(`cannot connect to Redis at ${node}`, err);
  }
  log?.info({ node, keyPrefix }, "fanout connected");

  return new ChannelFanout(
    keyPrefix,
    subscriptions,
    {
      publish: (messages) => publishPipelined(publisher, messages),
      close: async () => {
        closing = true;
        subscriber.disconnect();
        await closeConnection(publisher);
      },
    },
    timeoutMs,
  );
}

async function publishPipelined(redis: Redis, messages: ReadonlyArray<ChannelMessage>): Promise<void> {
  const [single] = messages;
  if (messages.length === 1 && single !== undefined) {
    await redis.publish(single.channel, toBuffer(single.payload));
    return;
  }
  const pipeline = redis.pipeline();
  for (const { channel, payload } of messages) pipeline.publish(channel, toBuffer(payload));
  throwPipelineError(await pipeline.exec());
}
