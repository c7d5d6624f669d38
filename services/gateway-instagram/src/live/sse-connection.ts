// One Server-Sent Events response: framing, and a serial task chain so that everything written
// to the device (released requests, live envelopes, markers) keeps its order.
import type { ServerResponse } from "node:http";
import type { DeviceSubscription } from "@switchboard/delivery-link";

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

/** Reconnect delay suggested to EventSource clients. */
const RETRY_MS = 2000;

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

  constructor(
    readonly device: DeviceKey,
    private readonly res: ServerResponse,
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
    this.res.write(`retry: ${RETRY_MS}\n\n`);
  }

  /** Writes one event (`data` as one JSON line). */
  send(event: string, data: unknown, id?: string): void {
    if (this.ended) return;
    const idLine = id === undefined ? "" : `id: ${id}\n`;
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
