import { AppError, Code } from "@switchboard/errors";
import type { ChannelSubscriptions } from "./channel-subscriptions.js";
import { withTimeout } from "./channel-subscriptions.js";
import { fanoutClosed, toFanoutError } from "./fanout-errors.js";
import { MAX_PAYLOAD_BYTES } from "./fanout.js";
import type { DeviceKey, Fanout, FanoutEvent, PayloadHandler } from "./fanout.js";
import { broadcastChannel, channelForDevice } from "./keys.js";

/** One payload addressed to one channel, as a transport publishes it. */
export interface ChannelMessage {
  channel: string;
  payload: Uint8Array;
}

/** What a transport (Redis, Redis Cluster, in-process) plugs into {@link ChannelFanout}. */
export interface FanoutTransport {
  /** Publish in as few round trips as possible, preserving order per channel. */
  publish(messages: ReadonlyArray<ChannelMessage>): Promise<void>;
  /** Release connections; called once, after the subscriptions were closed. */
  close(): Promise<void>;
}

/**
 * The {@link Fanout} contract on top of channels: builds channel names, validates input, applies the
 * timeout and translates failures, so each transport only moves bytes.
 */
export class ChannelFanout implements Fanout {
  private closing: Promise<void> | undefined;

  constructor(
    private readonly keyPrefix: string,
    private readonly subscriptions: ChannelSubscriptions,
    private readonly transport: FanoutTransport,
    private readonly timeoutMs: number,
  ) {}

  async publish(events: ReadonlyArray<FanoutEvent>): Promise<void> {
    if (this.closing !== undefined) throw fanoutClosed();
    if (events.length === 0) return;
    const messages = events.map(({ key, payload }) => ({
      channel: channelForDevice(key, this.keyPrefix),
      payload: checkPayload(payload),
    }));
    await this.send(messages);
  }

  async subscribe(key: DeviceKey, handler: PayloadHandler): Promise<() => Promise<void>> {
    return this.subscriptions.add(channelForDevice(key, this.keyPrefix), handler);
  }

  onResync(listener: () => void): () => void {
    return this.subscriptions.onResync(listener);
  }

  async publishBroadcast(payload: Uint8Array): Promise<void> {
    if (this.closing !== undefined) throw fanoutClosed();
    await this.send([{ channel: broadcastChannel(this.keyPrefix), payload: checkPayload(payload) }]);
  }

  async subscribeBroadcast(handler: PayloadHandler): Promise<() => Promise<void>> {
    return this.subscriptions.add(broadcastChannel(this.keyPrefix), handler);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.subscriptions.close();
      await this.transport.close();
    })();
    return this.closing;
  }

  private async send(messages: ReadonlyArray<ChannelMessage>): Promise<void> {
    try {
      await withTimeout(
        this.transport.publish(messages),
        this.timeoutMs,
        `publish timed out after ${this.timeoutMs} ms`,
      );
    } catch (err) {
      throw toFanoutError(err, "fanout publish failed");
    }
  }
}

function checkPayload(payload: Uint8Array): Uint8Array {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new AppError(
      Code.InvalidArgument,
      "FANOUT_PAYLOAD_TOO_LARGE",
      `fanout payload of ${payload.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`,
    );
  }
  return payload;
}
