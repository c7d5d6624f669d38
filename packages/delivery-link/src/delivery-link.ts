import type { MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AppError, Code, isAppError } from "@switchboard/errors";
import { createClient, type BidiStream, type ServiceClient } from "@switchboard/grpc";
import {
  DirectoryService,
  GroupService,
  KeyService,
  MessageService,
  RequestService,
  ReportService,
  SealedSenderService,
  type ConnectRequestSchema,
  type ConnectResponse,
  type ConnectResponseSchema,
  type Envelope,
  type ErrorStatus,
  type SendGroupMessageRequestSchema,
  type SendGroupMessageResponse,
  type SendMessageRequestSchema,
  type SendMessageResponse,
} from "@switchboard/proto";
import type { Logger } from "pino";
import { messageServiceCodecs } from "./connect-codec.js";

/** Options of {@link createDeliveryLink}. */
export interface DeliveryLinkOptions {
  /** The delivery service, `host:port`. */
  target: string;
  /** The app credential (`APP_TOKENS` entry of the delivery service). */
  appToken: string;
  /** Connect streams to multiplex devices and sends over (default 2). */
  streams?: number;
  log: Logger;
  /** How long a send waits for its result, including a reconnect (default 15 s). */
  sendTimeoutMs?: number;
  /** Reconnect back-off bounds (defaults 100 ms and 5 s), with full jitter. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** gRPC channel credentials (default insecure). */
  credentials?: grpc.ChannelCredentials;
}

/** A device of an account. */
export interface DeviceAddress {
  accountId: string;
  deviceId: number;
}

/** Receives one device's traffic. Called in stream order. */
export interface DeviceListener {
  /** A message for the device. May repeat after a reconnect (unacknowledged redelivery). */
  onEnvelope(envelope: Envelope): void;
  /** The device's stored backlog has been delivered (again after each reconnect). */
  onQueueEmpty(): void;
  /** The device subscribed elsewhere; this subscription has ended. */
  onDisplaced(): void;
  /**
   * A subscribe or ack for the device failed for good (e.g. DEVICE_NOT_FOUND); the subscription
   * ended. Transient failures (UNAVAILABLE and the like) are retried instead.
   */
  onError?(error: AppError): void;
}

/** A live device subscription. */
export interface DeviceSubscription {
  /** Acknowledges delivered envelopes by id (removes them from the device's queue). */
  ack(messageIds: string[]): Promise<void>;
  /** Ends the subscription; unacknowledged messages stay queued. */
  close(): Promise<void>;
}

/** A gateway's (or provider's) connection to the delivery service. */
export interface DeliveryLink {
  readonly directory: ServiceClient<typeof DirectoryService>;
  readonly keys: ServiceClient<typeof KeyService>;
  readonly groups: ServiceClient<typeof GroupService>;
  readonly messages: ServiceClient<typeof MessageService>;
  /** Message requests, blocks and the requests policy (acting for a device of the app). */
  readonly requests: ServiceClient<typeof RequestService>;
  /** Abuse reports with message franking (acting for a reporting device of the app). */
  readonly reports: ServiceClient<typeof ReportService>;
  /** Sender certificates, the trust root and unidentified access (acting for a device of the app). */
  readonly sealedSender: ServiceClient<typeof SealedSenderService>;
  /**
   * Sends a sealed-sender message: a unary SendMessage authorised by the recipient's access key
   * (`request.sender` must be unset). The app credential rides along but is not used for it.
   */
  sendSealed(
    req: MessageInitShape<typeof SendMessageRequestSchema>,
    accessKey: Uint8Array,
  ): Promise<SendMessageResponse>;
  /** Sends over a Connect stream (sends of one sender device keep their order). Errors are AppError. */
  send(req: MessageInitShape<typeof SendMessageRequestSchema>): Promise<SendMessageResponse>;
  /** Sends a group message over a Connect stream. */
  sendGroup(req: MessageInitShape<typeof SendGroupMessageRequestSchema>): Promise<SendGroupMessageResponse>;
  /**
   * Streams a device's queue to `listener`; re-subscribed automatically after a reconnect (the
   * backlog, including unacknowledged messages, is delivered again).
   */
  subscribe(device: DeviceAddress, listener: DeviceListener, opts?: { window?: number }): DeviceSubscription;
  /** Devices currently subscribed through this link. */
  readonly subscribedDevices: number;
  /** Ends every stream and closes the channel. */
  close(): Promise<void>;
}

type Stream = BidiStream<typeof ConnectRequestSchema, typeof ConnectResponseSchema>;
type ConnectFrame = MessageInitShape<typeof ConnectRequestSchema>;

/** Call metadata by which a Connect client opts in to ConnectResponseBatch frames. */
const FRAME_BATCHING_METADATA = "switchboard-frame-batching";
/** Frames per ConnectRequestBatch (the server accepts up to 1,000). */
const MAX_REQUEST_BATCH = 500;

interface PendingSend {
  resolve: (r: ConnectResponse & { frame: { case: "sendResult" } }) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

interface Sub {
  device: DeviceAddress;
  listener: DeviceListener;
  window: number;
  closed: boolean;
}

const keyOf = (d: DeviceAddress) => `${d.accountId}/${d.deviceId}`;

/** Frame errors worth retrying: the subscription stays and is re-sent after a pause. */
const TRANSIENT = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.ResourceExhausted,
]);

function hashOf(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

const fromStatus = (s: ErrorStatus | undefined): AppError =>
  new AppError(s?.code ?? Code.Unknown, s?.reason || "UNKNOWN", s?.message ?? "unknown error", {
    retryAfterMs: s && s.retryAfterMs > 0 ? s.retryAfterMs : undefined,
  });

/**
 * Creates a link: one gRPC channel carrying unary clients and `streams` long-lived Connect
 * streams. Devices and senders are spread over the streams by hash, so one device's traffic and
 * one sender's sends always share a stream (and keep their order). A broken stream fails its
 * pending sends with UNAVAILABLE (LINK_RECONNECTING: safe to retry with the same
 * client_message_id), reconnects with jittered exponential back-off, and re-subscribes its
 * devices, which re-drains their queues.
 */
export function createDeliveryLink(opts: DeliveryLinkOptions): DeliveryLink {
  const channel = new grpc.Client(opts.target, opts.credentials ?? grpc.credentials.createInsecure(), {
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
  });
  const metadata = () => ({ authorization: `Bearer ${opts.appToken}` });
  const directory = createClient(DirectoryService, channel, { metadata });
  const keys = createClient(KeyService, channel, { metadata });
  const groups = createClient(GroupService, channel, { metadata });
  // The Connect stream carries nearly all of the link's traffic (and SendMessage the rest of its
  // sends): hand-written codecs spare them protobuf-es reflection (see connect-codec.ts).
  const messages = createClient(MessageService, channel, { metadata, codecs: messageServiceCodecs });
  const requests = createClient(RequestService, channel, { metadata });
  const reports = createClient(ReportService, channel, { metadata });
  const sealedSender = createClient(SealedSenderService, channel, { metadata });
  const sendTimeoutMs = opts.sendTimeoutMs ?? 15_000;
  const minMs = opts.reconnectMinMs ?? 100;
  const maxMs = opts.reconnectMaxMs ?? 5_000;
  let closed = false;
  let correlation = 0;

  class LinkStream {
    private stream: Stream | undefined;
    /**
     * Frames written in this turn of the event loop, sent together as one ConnectRequestBatch
     * once the server has shown it understands batches (it sent one on this stream).
     */
    private outbox: Array<{ frame: ConnectFrame; resolve: () => void; reject: (e: unknown) => void }> = [];
    private flushScheduled = false;
    private serverBatches = false;
    private readonly pending = new Map<number, PendingSend>();
    readonly subs = new Map<string, Sub>();
    private attempt = 0;
    private waiters: Array<() => void> = [];

    constructor(private readonly index: number) {
      this.open();
    }

    private open() {
      if (closed) return;
      // Opt in to ConnectResponseBatch frames: at high rates the delivery service then writes the
      // frames of one event-loop turn as one stream message.
      const stream = messages.connect({ metadata: { [FRAME_BATCHING_METADATA]: "1" } });
      this.stream = stream;
      this.serverBatches = false;
      for (const sub of this.subs.values())
        void this.write({ frame: { case: "subscribe", value: { device: sub.device, window: sub.window } } });
      for (const w of this.waiters.splice(0)) w();
      void this.read(stream);
    }

    private async read(stream: Stream) {
      let failure: unknown;
      try {
        for await (const f of stream.responses) {
          this.attempt = 0;
          this.dispatch(f);
        }
      } catch (err) {
        failure = err;
      }
      if (this.stream !== stream) return;
      this.stream = undefined;
      const error = new AppError(
        Code.Unavailable,
        "LINK_RECONNECTING",
        "the delivery stream broke; retry with the same client_message_id",
        {
          cause: failure,
        },
      );
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(error);
        this.pending.delete(id);
      }
      if (closed) return;
      const delay = Math.random() * Math.min(maxMs, minMs * 2 ** this.attempt++);
      opts.log.warn(
        { err: failure, stream: this.index, retryInMs: Math.round(delay), devices: this.subs.size },
        "delivery stream lost; reconnecting",
      );
      setTimeout(() => this.open(), delay).unref();
    }

    private dispatch(f: ConnectResponse) {
      switch (f.frame.case) {
        case "batch": {
          this.serverBatches = true;
          for (const inner of f.frame.value.frames) if (inner.frame.case !== "batch") this.dispatch(inner);
          return;
        }
        case "delivery": {
          const d = f.frame.value.destination;
          const sub = d && this.subs.get(keyOf(d));
          if (sub && !sub.closed) sub.listener.onEnvelope(f.frame.value);
          return;
        }
        case "queueEmpty": {
          const d = f.frame.value.device;
          const sub = d && this.subs.get(keyOf(d));
          if (sub && !sub.closed) sub.listener.onQueueEmpty();
          return;
        }
        case "displaced": {
          const d = f.frame.value.device;
          const sub = d && this.subs.get(keyOf(d));
          if (sub && !sub.closed) {
            sub.closed = true;
            this.subs.delete(keyOf(sub.device));
            sub.listener.onDisplaced();
          }
          return;
        }
        case "sendResult": {
          const id = Number(f.frame.value.correlationId);
          const p = this.pending.get(id);
          if (!p) return;
          this.pending.delete(id);
          clearTimeout(p.timer);
          p.resolve(f as ConnectResponse & { frame: { case: "sendResult" } });
          return;
        }
        case "frameError": {
          const d = f.frame.value.device;
          const sub = d && this.subs.get(keyOf(d));
          const error = fromStatus(f.frame.value.error);
          if (sub && !sub.closed && TRANSIENT.has(error.code)) {
            // E.g. the database is briefly unreachable: subscribe again after a jittered pause.
            const delay = Math.min(maxMs, minMs * 4) * (0.5 + Math.random());
            opts.log.warn(
              { reason: error.reason, retryInMs: Math.round(delay) },
              "subscribe failed; retrying",
            );
            setTimeout(() => {
              if (sub.closed || this.subs.get(keyOf(sub.device)) !== sub) return;
              void this.write({
                frame: { case: "subscribe", value: { device: sub.device, window: sub.window } },
              }).catch(() => undefined);
            }, delay).unref();
            return;
          }
          if (sub && !sub.closed) {
            sub.closed = true;
            this.subs.delete(keyOf(sub.device));
            if (sub.listener.onError) sub.listener.onError(error);
          } else opts.log.warn({ reason: error.reason, code: error.code }, "delivery frame error");
          return;
        }
        default:
          return;
      }
    }

    /** Writes a frame now, or after the reconnect in progress. */
    async write(frame: ConnectFrame): Promise<void> {
      while (!this.stream) {
        if (closed) throw new AppError(Code.Unavailable, "LINK_CLOSED", "the delivery link is closed");
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
      if (!this.serverBatches) return this.stream.send(frame);
      return new Promise<void>((resolve, reject) => {
        this.outbox.push({ frame, resolve, reject });
        if (this.outbox.length >= MAX_REQUEST_BATCH) this.flush();
        else if (!this.flushScheduled) {
          this.flushScheduled = true;
          setImmediate(() => this.flush());
        }
      });
    }

    private flush() {
      this.flushScheduled = false;
      const items = this.outbox;
      if (items.length === 0) return;
      this.outbox = [];
      const stream = this.stream;
      const sent = !stream
        ? Promise.reject(
            new AppError(Code.Unavailable, "LINK_RECONNECTING", "the delivery stream broke; retry"),
          )
        : items.length === 1
          ? stream.send((items[0] as (typeof items)[number]).frame)
          : stream.send({ frame: { case: "batch", value: { frames: items.map((i) => i.frame) } } });
      sent.then(
        () => {
          for (const i of items) i.resolve();
        },
        (err: unknown) => {
          for (const i of items) i.reject(err);
        },
      );
    }

    request(
      frame: (id: number) => ConnectFrame,
    ): Promise<ConnectResponse & { frame: { case: "sendResult" } }> {
      const id = ++correlation;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(
            new AppError(
              Code.DeadlineExceeded,
              "SEND_TIMEOUT",
              `no send result within ${sendTimeoutMs} ms; retry with the same client_message_id`,
            ),
          );
        }, sendTimeoutMs);
        this.pending.set(id, { resolve, reject, timer });
        this.write(frame(id)).catch((err: unknown) => {
          if (!this.pending.delete(id)) return;
          clearTimeout(timer);
          reject(
            isAppError(err)
              ? err
              : new AppError(Code.Unavailable, "LINK_RECONNECTING", "the delivery stream broke; retry", {
                  cause: err,
                }),
          );
        });
      });
    }

    close() {
      this.stream?.cancel();
      this.stream = undefined;
      for (const w of this.waiters.splice(0)) w();
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new AppError(Code.Unavailable, "LINK_CLOSED", "the delivery link is closed"));
      }
      this.pending.clear();
    }
  }

  const streams = Array.from({ length: Math.max(1, opts.streams ?? 2) }, (_, i) => new LinkStream(i));
  const streamFor = (d: DeviceAddress) => streams[hashOf(keyOf(d)) % streams.length] as LinkStream;
  const senderOf = (req: { sender?: { accountId?: string; deviceId?: number } }) => ({
    accountId: req.sender?.accountId ?? "",
    deviceId: req.sender?.deviceId ?? 0,
  });

  return {
    directory,
    keys,
    groups,
    messages,
    requests,
    reports,
    sealedSender,
    sendSealed(req, accessKey) {
      return messages.sendMessage(req, {
        metadata: { "unidentified-access-key": Buffer.from(accessKey).toString("base64") },
      });
    },
    async send(req) {
      const f = await streamFor(senderOf(req)).request((id) => ({
        frame: { case: "send", value: { correlationId: BigInt(id), request: req } },
      }));
      const r = f.frame.value.result;
      if (r.case === "send") return r.value;
      if (r.case === "error") throw fromStatus(r.value);
      throw new AppError(Code.Internal, "UNEXPECTED_RESULT", "unexpected send result");
    },
    async sendGroup(req) {
      const f = await streamFor(senderOf(req)).request((id) => ({
        frame: { case: "sendGroup", value: { correlationId: BigInt(id), request: req } },
      }));
      const r = f.frame.value.result;
      if (r.case === "sendGroup") return r.value;
      if (r.case === "error") throw fromStatus(r.value);
      throw new AppError(Code.Internal, "UNEXPECTED_RESULT", "unexpected send result");
    },
    subscribe(device, listener, subOpts) {
      const s = streamFor(device);
      const sub: Sub = {
        device: { accountId: device.accountId, deviceId: device.deviceId },
        listener,
        window: subOpts?.window ?? 0,
        closed: false,
      };
      const previous = s.subs.get(keyOf(device));
      if (previous) {
        // The new subscription replaces it: closing the old handle later must not unsubscribe.
        previous.closed = true;
        previous.listener.onDisplaced();
      }
      s.subs.set(keyOf(device), sub);
      void s
        .write({ frame: { case: "subscribe", value: { device: sub.device, window: sub.window } } })
        .catch(() => {
          // Re-sent on reconnect.
        });
      return {
        async ack(ids) {
          if (ids.length === 0) return;
          if (sub.closed) {
            // Displaced or closed: the ids are still worth removing (acks are by id, from anywhere).
            await messages.ackMessages({ device: sub.device, messageIds: ids });
            return;
          }
          await s.write({ frame: { case: "ack", value: { device: sub.device, messageIds: ids } } });
        },
        async close() {
          if (sub.closed) return;
          sub.closed = true;
          if (s.subs.get(keyOf(device)) === sub) s.subs.delete(keyOf(device));
          await s
            .write({ frame: { case: "unsubscribe", value: { device: sub.device } } })
            .catch(() => undefined);
        },
      };
    },
    get subscribedDevices() {
      return streams.reduce((n, s) => n + s.subs.size, 0);
    },
    async close() {
      closed = true;
      for (const s of streams) s.close();
      channel.close();
    },
  };
}
