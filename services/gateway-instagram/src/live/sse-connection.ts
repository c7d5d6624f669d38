// One Server-Sent Events response: framing, and a serial task chain so that everything written
// to the device (released requests, live envelopes, markers) keeps its order.
import type { ServerResponse } from "node:http";
import type { DeviceSubscription } from "@switchboard/delivery-link";
import type { Corkable } from "@switchboard/gateway-http";

/** The device an SSE connection streams. */
export interface DeviceKey {
  accountId: string;
  deviceId: number;
}

/** The SSE response headers. */
export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  "x-accel-buffering": "no",
} as const;

/**
 * Reconnect delay suggested to EventSource clients: 2 s plus up to 3 s of jitter, different per
 * connection, so that the browsers dropped by one gateway restart do not all return at once
 * (EventSource retries after exactly `retry` ms, without back-off of its own).
 */
const RETRY_MS = 2000;
const RETRY_JITTER_MS = 3000;

/**
 * Most bytes a response may hold unsent. A client that stopped reading makes it grow (the delivery
 * window bounds unacknowledged messages, not their bytes); beyond this the connection is dropped
 * and its unacknowledged messages wait for the next one.
 */
export const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/** A device's live event stream. Kept small: many idle ones are expected. */
export class SseConnection {
  /** The delivery subscription feeding this connection, once subscribed. */
  sub: DeviceSubscription | undefined;
  /** False once the subscription ended (displaced, failed, closed); acks then go unary. */
  subActive = false;
  /** Ids of released request items streamed here and not yet acknowledged. */
  readonly releasedIds = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private ended = false;

  /**
   * `holdWrites` (a createWriteCoalescer): events written in one tick of the event loop go out in
   * one write of the response instead of one each.
   */
  constructor(
    readonly device: DeviceKey,
    private readonly res: ServerResponse,
    private readonly holdWrites?: (stream: Corkable) => void,
  ) {}

  /** `accountId/deviceId`. */
  get key(): string {
    return `${this.device.accountId}/${this.device.deviceId}`;
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Sends the headers and the reconnect hint. */
  open(): void {
    this.res.writeHead(200, SSE_HEADERS);
    this.res.write(`retry: ${RETRY_MS + Math.floor(Math.random() * RETRY_JITTER_MS)}\n\n`);
  }

  /** Writes one event (`data` as one JSON line). */
  send(event: string, data: unknown, id?: string): void {
    if (this.ended) return;
    if (this.res.writableLength > MAX_BUFFERED_BYTES) {
      // destroy(), not end(): ending would queue behind the same unread bytes. The 'close' event
      // detaches the connection and closes its subscription.
      this.ended = true;
      this.res.destroy();
      return;
    }
    const idLine = id === undefined ? "" : `id: ${id}\n`;
    this.holdWrites?.(this.res);
    this.res.write(`event: ${event}\n${idLine}data: ${JSON.stringify(data)}\n\n`);
  }

  /** Writes a comment line (keep-alive). */
  comment(text: string): void {
    if (!this.ended) this.res.write(`: ${text}\n\n`);
  }

  /** Runs `task` after every task enqueued before it; a failing task is handed to `onError`. */
  enqueue(task: () => Promise<void>, onError: (err: unknown) => void): void {
    this.chain = this.chain.then(async () => {
      if (this.ended) return;
      try {
        await task();
      } catch (err) {
        onError(err);
      }
    });
  }

  /** Resolves when every task enqueued so far has run. */
  idle(): Promise<void> {
    return this.chain;
  }

  /** Ends the response (after an optional final event). Idempotent. */
  end(finalEvent?: { event: string; data: unknown }): void {
    if (this.ended) return;
    if (finalEvent) this.send(finalEvent.event, finalEvent.data);
    this.ended = true;
    this.res.end();
  }
}
