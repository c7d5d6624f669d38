// Live WebSocket connections: one per device on this instance, each subscribed to the device's
// queue through the shared delivery link (a few multiplexed Connect streams for all devices).
import { AppError, Code } from "@switchboard/errors";
import type { DeliveryLink, DeviceSubscription } from "@switchboard/delivery-link";
import { createWriteCoalescer, type Corkable } from "@switchboard/gateway-http";
import type { Envelope } from "@switchboard/proto";
import type { Logger } from "pino";
import type { WebSocket, RawData } from "ws";
import type { Directory } from "../directory/directory.js";
import { parseClientFrame, type ClientFrame } from "../domain/frames.js";
import { envelopeToEvent, type DeviceAddress } from "../domain/translate.js";
import { problemOf, toAppError } from "../http/problem.js";
import type { Submitted } from "../http/sends.js";

/** Close codes this server uses. */
export const CLOSE = {
  /** Another connection of the same device took over. */
  DISPLACED: 4000,
  /** The device's subscription failed or the device was removed. */
  SUBSCRIPTION_ENDED: 4001,
  /** The server is shutting down; reconnect (to another instance). */
  GOING_AWAY: 1001,
} as const;

/** Default of `maxBufferedBytes`: what one socket may hold unsent before it is dropped. */
export const DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/**
 * Send frames of one socket submitted or waiting and not yet answered: at this many the server stops
 * reading the socket until results come back (backpressure, as the WhatsApp-style Chat stream does).
 */
export const MAX_PENDING_SENDS = 256;

const OPEN = 1;

/** A `send` or `send_group` frame. */
export type SendFrame = Extract<ClientFrame, { ref: string }>;

/** Validates a socket's send frames and submits them for the connected device. */
export interface SocketSends {
  /** Throws INVALID_ARGUMENT (INVALID_REQUEST) for a frame that does not match its schema. */
  submit(frame: SendFrame): Promise<Submitted>;
}

/** The live connections of one gateway instance. */
export interface ConnectionRegistry {
  /**
   * Serves a freshly upgraded socket for `device`, displacing an older socket of the same device.
   * With `transport` (the TCP socket under it), the frames of one tick share a write
   * (createWriteCoalescer).
   */
  attach(
    socket: WebSocket,
    device: DeviceAddress,
    opts: { window: number; sends: SocketSends; transport?: Corkable },
  ): void;
  /** Closes the device's socket (it was removed). */
  disconnect(device: DeviceAddress): void;
  /** Records ids acknowledged over HTTP, so a redelivery of them is forwarded again. */
  noteAcked(device: DeviceAddress, ids: string[]): void;
  /** Connections open now. */
  readonly size: number;
  /** Closes every connection (1001) and stops the heartbeat. */
  close(): void;
}

const keyOf = (d: DeviceAddress) => `${d.accountId}/${d.deviceId}`;

interface Context {
  link: DeliveryLink;
  directory: Directory;
  log: Logger;
  maxBufferedBytes: number;
  onEnd(conn: DeviceConnection): void;
  /** Holds `transport`'s writes until this tick's frames are written (createWriteCoalescer). */
  holdWrites(transport: Corkable): void;
}

class DeviceConnection {
  alive = true;
  private sub: DeviceSubscription | undefined;
  private tail: Promise<void> = Promise.resolve();
  /** Send frames are submitted one after another (a device's messages keep their order). */
  private sendTail: Promise<void> = Promise.resolve();
  private pendingSends = 0;
  /** Envelopes sent and not yet acknowledged: a redelivery of one (after a link reconnect) is skipped. */
  readonly unacked = new Set<string>();
  private ended = false;
  /** Set when a newer local socket took the subscription over: this one must not unsubscribe. */
  private handedOver = false;

  constructor(
    readonly socket: WebSocket,
    readonly device: DeviceAddress,
    private readonly ctx: Context,
    private readonly sends: SocketSends,
    private readonly transport: Corkable | undefined,
  ) {}

  start(window: number): void {
    this.socket.on("message", (data: RawData, isBinary: boolean) => this.onFrame(data, isBinary));
    this.socket.on("pong", () => {
      this.alive = true;
    });
    this.socket.on("close", () => this.end());
    this.sub = this.ctx.link.subscribe(
      { accountId: this.device.accountId, deviceId: this.device.deviceId },
      {
        onEnvelope: (e) => this.onEnvelope(e),
        onQueueEmpty: () => this.enqueue(async () => this.emit({ type: "queue_empty" })),
        onDisplaced: () => this.displace(false),
        onError: (err) => this.terminate(CLOSE.SUBSCRIPTION_ENDED, err, "subscription failed"),
      },
      window > 0 ? { window } : undefined,
    );
  }

  private onEnvelope(envelope: Envelope): void {
    if (this.ended || this.unacked.has(envelope.id)) return;
    if (!envelope.ephemeral) this.unacked.add(envelope.id);
    this.enqueue(async () => {
      const source = envelope.source;
      let handle;
      try {
        handle = source === undefined ? undefined : await this.ctx.directory.handleOf(source.accountId);
      } catch (err) {
        // Rendered with account_id and app only; the client can still decrypt and route it.
        this.ctx.log.warn({ err, accountId: source?.accountId }, "sender look-up failed");
      }
      this.emit(envelopeToEvent(envelope, handle));
    });
  }

  /** Runs `fn` after everything queued before it, so events keep the delivery order. */
  private enqueue(fn: () => Promise<void>): void {
    this.tail = this.tail
      .then(fn)
      .catch((err: unknown) => this.ctx.log.error({ err }, "stream event failed"));
  }

  private emit(event: object): void {
    if (this.socket.readyState !== OPEN) return;
    // A client that stopped reading: what the socket holds unsent only grows (the delivery window
    // bounds unacknowledged messages, not their bytes, and ephemeral ones are not counted). Drop
    // it rather than buffer without bound; its unacknowledged messages stay queued for its next
    // connection. terminate(): a close handshake would wait on the same stalled reader.
    if (this.socket.bufferedAmount > this.ctx.maxBufferedBytes) {
      this.ctx.log.warn(
        {
          accountId: this.device.accountId,
          deviceId: this.device.deviceId,
          bufferedBytes: this.socket.bufferedAmount,
        },
        "slow consumer disconnected",
      );
      this.end();
      this.socket.terminate();
      return;
    }
    if (this.transport !== undefined) this.ctx.holdWrites(this.transport);
    this.socket.send(JSON.stringify(event));
  }

  private emitError(err: unknown): void {
    this.emit({ type: "error", problem: this.problemFor(err, "stream frame failed") });
  }

  /** The problem document of `err` (unexpected errors are logged, as `what`, and rendered INTERNAL). */
  private problemFor(err: unknown, what: string) {
    const { error, status } = toAppError(err);
    if (error.code === Code.Internal) this.ctx.log.error({ err }, what);
    return problemOf(error, undefined, status);
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.emitError(new AppError(Code.InvalidArgument, "BINARY_FRAME", "frames are JSON text"));
      return;
    }
    let frame;
    try {
      frame = parseClientFrame(
        Buffer.isBuffer(data) ? data.toString("utf8") : Buffer.concat(data as Buffer[]).toString("utf8"),
      );
    } catch (err) {
      this.emitError(err);
      return;
    }
    if (frame.type === "ping") {
      this.emit({ type: "pong" });
      return;
    }
    if (frame.type !== "ack") {
      this.send(frame);
      return;
    }
    for (const id of frame.ids) this.unacked.delete(id);
    const sub = this.sub;
    if (sub === undefined || this.ended) return;
    sub.ack(frame.ids).catch((err: unknown) => this.emitError(err));
  }

  /** Submits a send frame after those before it; answers it with a send_result when its outcome is known. */
  private send(frame: SendFrame): void {
    if (++this.pendingSends === MAX_PENDING_SENDS) this.socket.pause();
    const { ref } = frame;
    this.sendTail = this.sendTail.then(async () => {
      let submitted: Submitted;
      try {
        submitted = await this.sends.submit(frame);
      } catch (err) {
        this.sendDone(ref, { error: err });
        return;
      }
      submitted.result.then(
        (result) => this.sendDone(ref, { result }),
        (err: unknown) => this.sendDone(ref, { error: err }),
      );
    });
  }

  private sendDone(ref: string, outcome: { result: object } | { error: unknown }): void {
    if (this.pendingSends-- === MAX_PENDING_SENDS && this.socket.readyState === OPEN) this.socket.resume();
    if ("result" in outcome) {
      this.emit({ type: "send_result", ref, result: outcome.result });
      return;
    }
    this.emit({ type: "send_result", ref, problem: this.problemFor(outcome.error, "send frame failed") });
  }

  /** Another connection of the device took over (`local`: on this instance). */
  displace(local: boolean): void {
    if (this.ended) return;
    if (local) this.handedOver = true;
    this.emit({ type: "displaced" });
    this.close(CLOSE.DISPLACED, "displaced");
  }

  /** Ends the connection with an error event. */
  terminate(code: number, err: unknown, reason: string): void {
    if (this.ended) return;
    this.emitError(err);
    this.close(code, reason);
  }

  close(code: number, reason: string): void {
    this.end();
    try {
      this.socket.close(code, reason);
    } catch {
      this.socket.terminate();
    }
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.ctx.onEnd(this);
    // Unacknowledged messages stay queued and go to the device's next connection.
    if (!this.handedOver) void this.sub?.close().catch(() => undefined);
  }
}

/**
 * Creates the registry; `heartbeatMs` is the ping interval (a socket silent for two is dropped),
 * `maxBufferedBytes` (default 8 MiB) the most a socket may hold unsent before it is terminated as
 * a slow consumer.
 */
export function createConnectionRegistry(deps: {
  link: DeliveryLink;
  directory: Directory;
  log: Logger;
  heartbeatMs: number;
  maxBufferedBytes?: number;
}): ConnectionRegistry {
  const byDevice = new Map<string, DeviceConnection>();
  const ctx: Context = {
    link: deps.link,
    directory: deps.directory,
    log: deps.log,
    maxBufferedBytes: deps.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
    onEnd: (conn) => {
      if (byDevice.get(keyOf(conn.device)) === conn) byDevice.delete(keyOf(conn.device));
    },
    holdWrites: createWriteCoalescer(),
  };
  const heartbeat = setInterval(() => {
    for (const conn of byDevice.values()) {
      if (!conn.alive) {
        conn.socket.terminate();
        continue;
      }
      conn.alive = false;
      conn.socket.ping();
    }
  }, deps.heartbeatMs);
  heartbeat.unref();

  return {
    attach(socket, device, opts) {
      const key = keyOf(device);
      byDevice.get(key)?.displace(true);
      const conn = new DeviceConnection(
        socket,
        { accountId: device.accountId, deviceId: device.deviceId },
        ctx,
        opts.sends,
        opts.transport,
      );
      byDevice.set(key, conn);
      conn.start(opts.window);
    },
    disconnect(device) {
      byDevice
        .get(keyOf(device))
        ?.terminate(
          CLOSE.SUBSCRIPTION_ENDED,
          new AppError(Code.Unauthenticated, "DEVICE_REMOVED", "the device was removed"),
          "device removed",
        );
    },
    noteAcked(device, ids) {
      const conn = byDevice.get(keyOf(device));
      if (conn !== undefined) for (const id of ids) conn.unacked.delete(id);
    },
    get size() {
      return byDevice.size;
    },
    close() {
      clearInterval(heartbeat);
      for (const conn of [...byDevice.values()]) conn.close(CLOSE.GOING_AWAY, "server shutting down");
    },
  };
}
