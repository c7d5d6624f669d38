import { fanoutClosed, fanoutUnavailable, toFanoutError } from "./fanout-errors.js";
import type { FanoutLogger, PayloadHandler } from "./fanout.js";

/**
 * Brings the server-side subscription of one channel to the wanted state; idempotent. Calls for one
 * channel never overlap: {@link ChannelSubscriptions} serialises them.
 */
export type ApplySubscription = (channel: string, wanted: boolean) => Promise<void>;

interface Subscriber {
  readonly handler: PayloadHandler;
}

interface ChannelEntry {
  readonly subscribers: Set<Subscriber>;
  /** Settles when the last queued server operation for this channel has finished. */
  tail: Promise<void>;
}

const RESYNC_RETRY_MIN_MS = 100;
const RESYNC_RETRY_MAX_MS = 5_000;
const RESYNC_PASS_TIMEOUT_MS = 10_000;

const noop = (): void => {};

/**
 * The transport-independent half of a fanout: local subscribers per channel (refcounted onto one
 * server subscription), payload dispatch, and resynchronisation after a connection loss or topology
 * change. A transport calls {@link ChannelSubscriptions.dispatch} for each message,
 * {@link ChannelSubscriptions.connectionLost} when its connection drops, and
 * {@link ChannelSubscriptions.requestResync} once it is back (or the topology moved channels).
 */
export class ChannelSubscriptions {
  private readonly entries = new Map<string, ChannelEntry>();
  private readonly resyncListeners = new Set<() => void>();
  /** Bumped on every connection loss, so a resync that overlapped a new loss does not report success. */
  private lossEpoch = 0;
  private resyncRunning = false;
  private resyncRequested = false;
  private closed = false;

  /**
   * @param apply the transport's server-side (un)subscribe.
   * @param timeoutMs how long `add` and the unsubscribe functions wait for `apply`.
   */
  constructor(
    private readonly apply: ApplySubscription,
    private readonly timeoutMs: number,
    private readonly log: FanoutLogger | undefined,
  ) {}

  /**
   * Add `handler` to `channel`, subscribing on the server if it is the first one. Resolves once the
   * server subscription is active; rejects with `FANOUT_UNAVAILABLE` (after `timeoutMs`) or `FANOUT_CLOSED`.
   */
  async add(channel: string, handler: PayloadHandler): Promise<() => Promise<void>> {
    if (this.closed) throw fanoutClosed();
    let entry = this.entries.get(channel);
    if (entry === undefined) {
      entry = { subscribers: new Set(), tail: Promise.resolve() };
      this.entries.set(channel, entry);
    }
    const subscriber: Subscriber = { handler };
    entry.subscribers.add(subscriber);
    try {
      await withTimeout(
        this.enqueue(channel, entry),
        this.timeoutMs,
        `subscribe timed out after ${this.timeoutMs} ms`,
      );
      if (this.closed) throw fanoutClosed();
    } catch (err) {
      // Not awaited: after a timeout the removal queues behind the subscribe that is still pending.
      void this.remove(channel, entry, subscriber, false);
      throw toFanoutError(err, "fanout subscribe failed");
    }
    let removed: Promise<void> | undefined;
    return () => (removed ??= this.remove(channel, entry, subscriber, true));
  }

  /** Hand `payload` to every local handler of `channel`; a throwing handler is logged and skipped. */
  dispatch(channel: string, payload: Uint8Array): void {
    const entry = this.entries.get(channel);
    if (entry === undefined) return;
    for (const { handler } of entry.subscribers) {
      try {
        handler(payload);
      } catch (err) {
        // One faulty handler must not break the connection's message loop or starve the others.
        this.log?.warn({ err, channel, payloadBytes: payload.byteLength }, "fanout handler failed");
      }
    }
  }

  /** Register a resync listener; returns its remover. */
  onResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => void this.resyncListeners.delete(listener);
  }

  /** The transport lost a connection: messages may be lost until the next successful resync. */
  connectionLost(): void {
    this.lossEpoch++;
  }

  /**
   * Re-apply every wanted subscription, retrying with back-off until all succeed, then call the resync
   * listeners, unless a new connection loss happened meanwhile (its own resync reports instead).
   * Calls during a running resync are coalesced into one more pass.
   */
  requestResync(): void {
    if (this.closed) return;
    this.resyncRequested = true;
    if (this.resyncRunning) return;
    this.resyncRunning = true;
    void this.runResync().finally(() => {
      this.resyncRunning = false;
    });
  }

  /** The channels with at least one local subscriber. */
  channels(): string[] {
    return [...this.entries].filter(([, entry]) => entry.subscribers.size > 0).map(([channel]) => channel);
  }

  /** Stop dispatching and resyncing and forget every subscriber. Idempotent. */
  close(): void {
    this.closed = true;
    this.entries.clear();
    this.resyncListeners.clear();
  }

  private async runResync(): Promise<void> {
    let failures = 0;
    while (this.resyncRequested && !this.closed) {
      this.resyncRequested = false;
      const epoch = this.lossEpoch;
      const startedAt = performance.now();
      const entries = [...this.entries];
      // The timeout keeps one stuck channel from stalling the loop; its retry queues behind it.
      const results = await Promise.allSettled(
        entries.map(([channel, entry]) =>
          withTimeout(this.enqueue(channel, entry), RESYNC_PASS_TIMEOUT_MS, "resubscribe timed out"),
        ),
      );
      if (this.closed) return;
      const failed = results.filter((result) => result.status === "rejected");
      if (failed.length > 0) {
        failures++;
        const delayMs = Math.min(RESYNC_RETRY_MIN_MS * 2 ** (failures - 1), RESYNC_RETRY_MAX_MS);
        this.log?.warn(
          {
            err: failed[0]?.reason,
            failedChannelCount: failed.length,
            channelCount: entries.length,
            delayMs,
          },
          "fanout resubscribe failed",
        );
        await sleep(delayMs);
        this.resyncRequested = true;
        continue;
      }
      if (epoch !== this.lossEpoch || this.resyncRequested) continue;
      this.log?.info(
        { channelCount: entries.length, durationMs: Math.round(performance.now() - startedAt) },
        "fanout resubscribed",
      );
      for (const listener of [...this.resyncListeners]) {
        try {
          listener();
        } catch (err) {
          // A failing listener must not keep the others from learning that events may be lost.
          this.log?.warn({ err }, "fanout resync listener failed");
        }
      }
    }
  }

  private async remove(
    channel: string,
    entry: ChannelEntry,
    subscriber: Subscriber,
    logFailure: boolean,
  ): Promise<void> {
    entry.subscribers.delete(subscriber);
    if (this.closed) return;
    try {
      await withTimeout(
        this.enqueue(channel, entry),
        this.timeoutMs,
        `unsubscribe timed out after ${this.timeoutMs} ms`,
      );
    } catch (err) {
      // Delivery to the handler already stopped locally; a stale server subscription only costs
      // traffic and is dropped on the next change of this channel or the next reconnect.
      if (logFailure) this.log?.warn({ err, channel }, "fanout unsubscribe failed");
    }
  }

  /** Queue one reconciliation of `channel` behind the ones before it; rejects if it fails. */
  private enqueue(channel: string, entry: ChannelEntry): Promise<void> {
    const run = entry.tail.then(() =>
      this.closed ? undefined : this.apply(channel, entry.subscribers.size > 0),
    );
    const tail = run.then(noop, noop);
    entry.tail = tail;
    void tail.then(() => {
      if (entry.tail === tail && entry.subscribers.size === 0 && this.entries.get(channel) === entry) {
        this.entries.delete(channel);
      }
    });
    return run;
  }
}

/** Reject with `FANOUT_UNAVAILABLE` if `promise` has not settled within `timeoutMs`. */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(fanoutUnavailable(message)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
