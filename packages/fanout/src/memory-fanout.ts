import { ChannelFanout } from "./channel-fanout.js";
import { ChannelSubscriptions } from "./channel-subscriptions.js";
import { DEFAULT_TIMEOUT_MS } from "./fanout.js";
import type { Fanout, FanoutLogger } from "./fanout.js";

/** Options of {@link createMemoryFanout}. */
export interface MemoryFanoutOptions {
  /** Receives warnings about throwing handlers. */
  log?: FanoutLogger;
}

/**
 * An in-process {@link Fanout} for embedded mode and tests: no network, one bus per call. Like Redis it
 * delivers asynchronously (each event in its own microtask, in publish order), copies payloads at
 * publish time, and only reaches handlers subscribed when the event is delivered. It never loses
 * events, so resync listeners are never called.
 */
export function createMemoryFanout(options: MemoryFanoutOptions = {}): Fanout {
  const subscriptions = new ChannelSubscriptions(async () => {}, DEFAULT_TIMEOUT_MS, options.log);
  return new ChannelFanout(
    "",
    subscriptions,
    {
      publish: async (messages) => {
        for (const { channel, payload } of messages) {
          const copy = new Uint8Array(payload);
          queueMicrotask(() => subscriptions.dispatch(channel, copy));
        }
      },
      close: async () => {},
    },
    DEFAULT_TIMEOUT_MS,
  );
}
