/** One device's channel address: the account it belongs to and its device number. */
export interface DeviceKey {
  accountId: string;
  deviceId: number;
}

/** One event for one device: opaque bytes the caller encoded (at most {@link MAX_PAYLOAD_BYTES}). */
export interface FanoutEvent {
  key: DeviceKey;
  payload: Uint8Array;
}

/**
 * Receives one payload, synchronously on the connection's read path: keep it short (wake a stream,
 * schedule work). The payload may be a view into a larger buffer: copy it to keep it past the call.
 * A handler that throws is logged and skipped; it does not stop delivery to other handlers.
 */
export type PayloadHandler = (payload: Uint8Array) => void;

/**
 * What fanout logs through: a pino `Logger` fits. Data object first, short lowercase event second.
 * Fanout logs ids, channel names and counts, never payloads.
 */
export interface FanoutLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  debug(obj: Record<string, unknown>, msg: string): void;
}

/**
 * The largest payload fanout carries, in bytes. Fanout wakes instances up; the data itself lives in
 * PostgreSQL, so a larger payload is a bug and is rejected with INVALID_ARGUMENT `FANOUT_PAYLOAD_TOO_LARGE`.
 */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/** How long `publish` and `subscribe` wait for Redis by default before rejecting with UNAVAILABLE. */
export const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * How often the Redis fanouts PING their connections by default, in ms. An unanswered PING is given
 * as long again, so a silent partition is noticed (and resynced) within about twice this.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

/**
 * The pub/sub layer that wakes whichever instance holds a device's live stream. Delivery is
 * best effort: events may be lost (e.g. across a Redis restart), and {@link Fanout.onResync} says when
 * that may have happened so subscribers re-read PostgreSQL, the source of truth. After a reconnect an
 * event may also arrive twice (ioredis resends unanswered commands), so handlers must be idempotent.
 *
 * Errors are `AppError`s: UNAVAILABLE `FANOUT_UNAVAILABLE` when Redis does not answer in time,
 * FAILED_PRECONDITION `FANOUT_CLOSED` after {@link Fanout.close}, INVALID_ARGUMENT for bad input.
 */
export interface Fanout {
  /**
   * Publish events, pipelined into as few round trips as possible (one per Redis node). Resolves when
   * Redis accepted them all; events of one key reach subscribers in array order. Do not mutate the
   * payloads until the promise settles. If it rejects, some events may still be delivered, later.
   */
  publish(events: ReadonlyArray<FanoutEvent>): Promise<void>;

  /**
   * Subscribe to one device's channel; `handler` gets every payload published after this resolves
   * (and possibly some published just before, if the key already had a local subscriber).
   * Resolves when the subscription is active on the server and returns an unsubscribe function
   * (idempotent, async; delivery to `handler` stops as soon as it is called). Several local subscribers
   * of one key are allowed and share one server subscription, which is dropped with the last of them.
   */
  subscribe(key: DeviceKey, handler: PayloadHandler): Promise<() => Promise<void>>;

  /**
   * Call `listener` after the connection to Redis was lost and re-established, or the cluster topology
   * changed, once every active subscription is live again: events published in between may be lost,
   * so listeners re-read state from PostgreSQL. Returns a function that removes the listener.
   */
  onResync(listener: () => void): () => void;

  /** Publish one event to every instance's broadcast subscribers (e.g. credential revocation). */
  publishBroadcast(payload: Uint8Array): Promise<void>;

  /** Subscribe to broadcasts, with the same semantics as {@link Fanout.subscribe}. */
  subscribeBroadcast(handler: PayloadHandler): Promise<() => Promise<void>>;

  /**
   * Drop every subscription and close the connections. Idempotent. Afterwards handlers and resync
   * listeners are no longer called and `publish`/`subscribe` reject with `FANOUT_CLOSED`.
   */
  close(): Promise<void>;
}
