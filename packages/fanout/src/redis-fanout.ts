import { Redis } from "ioredis";
import type { RedisOptions } from "ioredis";
import { ChannelFanout } from "./channel-fanout.js";
import type { ChannelMessage } from "./channel-fanout.js";
import { ChannelSubscriptions } from "./channel-subscriptions.js";
import { fanoutUnavailable } from "./fanout-errors.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_TIMEOUT_MS } from "./fanout.js";
import type { Fanout, FanoutLogger } from "./fanout.js";
import { unpackEventBatch, packEventBatches } from "./event-batch.js";
import { broadcastChannel, checkKeyPrefix, eventsChannel } from "./keys.js";
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
  /**
   * How `publish` sends device events: `batched` (default) packs each call's events into one
   * message on the `events` channel that every instance subscribes (one PUBLISH per call instead of
   * one per device); `per-device` publishes each event on its device channel, as versions before
   * batching did. Subscribers always listen both ways, so during a rolling upgrade from a version
   * without batching run the new instances with `per-device` until the old ones are gone.
   */
  publishMode?: "batched" | "per-device";
}

/**
 * Connect a {@link Fanout} over classic Redis pub/sub (SUBSCRIBE/PUBLISH) with two connections: one
 * subscriber, one publisher (a subscribed connection cannot publish). Both reconnect with back-off;
 * after the subscriber reconnects, every active channel is re-subscribed and the resync listeners run.
 * Device events are published in batches on one shared channel (see `publishMode`); each device's
 * own channel is subscribed too, so per-device publishers still reach it.
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
  // The batch channel is an ordinary subscription: resubscribed and resynced like the others.
  const batches = eventsChannel(keyPrefix);
  try {
    await subscriptions.add(batches, (batch) => {
      const ok = unpackEventBatch(toBuffer(batch), (channel, payload) => {
        if (channel !== batches) subscriptions.dispatch(channel, payload);
      });
      if (!ok) log?.warn({ channel: batches, payloadBytes: batch.byteLength }, "undecodable event batch");
    });
  } catch (err) {
    closing = true;
    subscriptions.close();
    subscriber.disconnect();
    publisher.disconnect();
    throw err;
  }
  log?.info({ node, keyPrefix }, "fanout connected");
  const batched = (options.publishMode ?? "batched") === "batched";
  const broadcast = broadcastChannel(keyPrefix);

  return new ChannelFanout(
    keyPrefix,
    subscriptions,
    {
      // Broadcasts keep their own channel (ChannelFanout sends them alone).
      publish: (messages) =>
        batched && messages[0]?.channel !== broadcast
          ? publishBatched(publisher, batches, messages)
          : publishPipelined(publisher, messages),
      close: async () => {
        closing = true;
        subscriber.disconnect();
        await closeConnection(publisher);
      },
    },
    timeoutMs,
  );
}

async function publishBatched(
  redis: Redis,
  channel: string,
  messages: ReadonlyArray<ChannelMessage>,
): Promise<void> {
  const packed = packEventBatches(messages);
  const [single] = packed;
  if (packed.length === 1 && single !== undefined) {
    await redis.publish(channel, single);
    return;
  }
  const pipeline = redis.pipeline();
  for (const batch of packed) pipeline.publish(channel, batch);
  throwPipelineError(await pipeline.exec());
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
