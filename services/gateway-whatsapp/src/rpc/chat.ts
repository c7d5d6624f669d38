// The Chat stream: one bidirectional stream per device. The device is subscribed through the
// delivery link (multiplexed with every other connected device over a few Connect streams);
// envelopes become IncomingChat / ServerReceipt frames, OutgoingChat frames become delivery sends,
// ChatAck frames become delivery acks.
import type { DeliveryLink, DeviceListener, DeviceSubscription } from "@switchboard/delivery-link";
import { AppError, Code, isAppError } from "@switchboard/errors";
import { Encoded, type BidiStreamingImpl, type CallContext, type StreamSender } from "@switchboard/grpc";
import { newAddress, whatsapp, type Address, type Envelope, type Handle } from "@switchboard/proto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { authenticateDevice, type AuthedDevice } from "../auth/device-auth.js";
import type { Directory } from "../directory.js";
import { handleKey, parseJid } from "../domain/jid.js";
import type { GatewayLimits } from "../domain/limits.js";
import {
  accountIdsOf,
  chatErrorOf,
  envelopeToChatFrame,
  groupSendResponseToAck,
  handlesOf,
  outgoingChatToSend,
  sendResponseToAck,
} from "../domain/translate.js";
import type { WaDatabase } from "../storage/schema.js";
import { encodeChatResponse } from "./chat-codec.js";

type ChatOut = StreamSender<typeof whatsapp.ChatResponseSchema>;
type Frame = MessageInitShape<typeof whatsapp.ChatResponseSchema>["frame"];

/** What the Chat handler needs. */
export interface ChatDeps {
  db: Kysely<WaDatabase>;
  link: DeliveryLink;
  directory: Directory;
  limits: GatewayLimits;
  log: Logger;
}

/** The Chat handler and the registry of connected devices on this instance. */
export interface ChatHub {
  readonly handler: BidiStreamingImpl<typeof whatsapp.ChatRequestSchema, typeof whatsapp.ChatResponseSchema>;
  /** Devices with an open Chat stream on this instance. */
  readonly connections: number;
}

const MAX_ACK_IDS = 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Ids remembered per stream as delivered-but-unacknowledged, to skip redeliveries after a link reconnect. */
const MAX_INFLIGHT_IDS = 2000;

const keyOf = (d: Address | AuthedDevice) => `${d.accountId}/${d.deviceId}`;

/**
 * A failed delivery subscription as the chat stream's final status: the delivery service's own
 * failures (INTERNAL, a pool timeout...) become UNAVAILABLE so that clients reconnect; expected
 * ones (DEVICE_NOT_FOUND after a removal) keep their code.
 */
function subscriptionError(err: AppError): AppError {
  const transient = [
    Code.Internal,
    Code.Unknown,
    Code.Unavailable,
    Code.DeadlineExceeded,
    Code.ResourceExhausted,
  ];
  if (!transient.includes(err.code)) return err;
  return new AppError(
    Code.Unavailable,
    "DELIVERY_UNAVAILABLE",
    "the delivery subscription failed; reconnect",
    {
      cause: err,
      retryAfterMs: 1000,
    },
  );
}

/** One device's open Chat stream. */
class ChatSession implements DeviceListener {
  readonly address: Address;
  private sub: DeviceSubscription | undefined;
  /** Delivered, unacknowledged ids; created with the first delivery (idle streams keep none). */
  private inflight: Set<string> | undefined;
  private deliveries: Promise<void> = Promise.resolve();
  /** Envelopes waiting in `deliveries` (not yet written to the call). */
  private queuedDeliveries = 0;
  private sends: Promise<void> = Promise.resolve();
  private pendingSends = 0;
  private sendSlot: (() => void) | undefined;
  private closed = false;
  /** Set once: why the call must end (displacement, a failed subscription, a broken delivery). */
  private endReason: AppError | undefined;
  private onEnd: ((err: AppError) => void) | undefined;
  readonly ended: Promise<AppError>;

  constructor(
    readonly device: AuthedDevice,
    private readonly out: ChatOut,
    private readonly ctx: CallContext,
    private readonly deps: ChatDeps,
  ) {
    this.address = newAddress({ accountId: device.accountId, deviceId: device.deviceId });
    this.ended = new Promise((resolve) => (this.onEnd = resolve));
  }

  /** True when another stream took over the device: this one must not unsubscribe it. */
  displaced = false;

  subscribe(): void {
    this.sub = this.deps.link.subscribe(
      { accountId: this.device.accountId, deviceId: this.device.deviceId },
      // The session is its own listener (methods, not four closures per idle stream).
      this,
      { window: this.deps.limits.chatWindow },
    );
  }

  /** DeviceListener: the stored backlog has been delivered. */
  onQueueEmpty(): void {
    this.enqueue(() => this.write({ case: "queueDrained", value: {} }));
  }

  /** DeviceListener: another subscription of this device took over. */
  onDisplaced(): void {
    this.displace();
  }

  /** DeviceListener: the subscription failed. */
  onError(err: AppError): void {
    this.end(subscriptionError(err));
  }

  /**
   * Queues an envelope for the call. Writes wait for the call's flow control, so a client that
   * stops reading holds envelopes here: durable ones are bounded by the delivery window
   * (`chatWindow` unacknowledged), ephemeral ones (typing...) are not counted by it and are
   * dropped once a window's worth is waiting, as the delivery service drops them for a full window.
   */
  onEnvelope(envelope: Envelope): void {
    if (envelope.ephemeral && this.queuedDeliveries >= this.deps.limits.chatWindow) return;
    this.queuedDeliveries++;
    this.enqueue(async () => {
      try {
        await this.deliver(envelope);
      } finally {
        this.queuedDeliveries--;
      }
    });
  }

  /** Ends this stream because its call was aborted (client cancel, shutdown); `reason` is the status. */
  abort(reason: AppError): void {
    this.end(reason);
  }

  /** Ends this stream with ABORTED (DISPLACED): the device connected again (here or elsewhere). */
  displace(): void {
    this.displaced = true;
    this.end(new AppError(Code.Aborted, "DISPLACED", "this device opened another chat stream"));
  }

  private end(err: AppError): void {
    if (this.endReason) return;
    this.endReason = err;
    this.closed = true;
    this.onEnd?.(err);
  }

  private enqueue(task: () => Promise<void>): void {
    if (this.closed) return;
    this.deliveries = this.deliveries.then(task).catch((err: unknown) => {
      // A lookup failed (delivery unavailable): the envelope stays unacknowledged and is
      // redelivered on the device's next stream, so end this one and let the client reconnect.
      this.ctx.log.warn({ err }, "chat delivery failed; ending the stream");
      this.end(
        isAppError(err) && err.code === Code.Unavailable
          ? err
          : new AppError(Code.Unavailable, "DELIVERY_FAILED", "delivery to this stream failed; reconnect"),
      );
    });
  }

  private async write(frame: Frame): Promise<void> {
    if (this.closed) return;
    try {
      // Written by hand (chat-codec.ts): the bytes protobuf-es would write, without its reflection.
      await this.out.send(new Encoded<typeof whatsapp.ChatResponseSchema>(encodeChatResponse(frame)));
    } catch {
      // The call is over (cancelled or ended); nothing more can reach the client.
      this.closed = true;
    }
  }

  private async deliver(envelope: Envelope): Promise<void> {
    if (this.closed) return;
    // A repeat after a link reconnect: this stream already handed it to the client.
    if (this.inflight?.has(envelope.id)) return;
    let handle: Handle | undefined;
    if (envelope.source && envelope.source.accountId !== "")
      handle = await this.deps.directory.findHandle(envelope.source.accountId);
    const inflight = (this.inflight ??= new Set());
    inflight.add(envelope.id);
    if (inflight.size > MAX_INFLIGHT_IDS) {
      const oldest = inflight.values().next().value;
      if (oldest !== undefined) inflight.delete(oldest);
    }
    await this.write(envelopeToChatFrame(envelope, handle));
  }

  /** Handles one client frame. Resolves when the next frame may be read (send backpressure). */
  async handle(req: whatsapp.ChatRequest): Promise<void> {
    switch (req.frame.case) {
      case "send":
        if (this.pendingSends >= this.deps.limits.maxPendingSends)
          await new Promise<void>((resolve) => (this.sendSlot = resolve));
        this.send(req.frame.value);
        return;
      case "ack":
        this.ack(req.frame.value.ids);
        return;
      default:
        await this.write({
          case: "error",
          value: chatErrorOf(
            "",
            new AppError(Code.InvalidArgument, "EMPTY_FRAME", "a chat frame must set send or ack"),
          ),
        });
    }
  }

  private ack(ids: string[]): void {
    const valid: string[] = [];
    for (const id of ids) {
      this.inflight?.delete(id);
      if (UUID.test(id)) valid.push(id);
    }
    if (valid.length < ids.length)
      void this.write({
        case: "error",
        value: chatErrorOf(
          "",
          new AppError(Code.InvalidArgument, "INVALID_ID", "ack ids are server ids (UUIDs)"),
        ),
      });
    for (let i = 0; i < valid.length; i += MAX_ACK_IDS) {
      this.sub?.ack(valid.slice(i, i + MAX_ACK_IDS)).catch((err: unknown) => this.writeError("", err));
    }
  }

  private send(msg: whatsapp.OutgoingChat): void {
    this.pendingSends++;
    // Submissions run in frame order (so one device's sends keep their order at the delivery
    // service); their results are awaited concurrently.
    this.sends = this.sends.then(async () => {
      let result: Promise<whatsapp.SendAck>;
      try {
        result = (await this.submit(msg)).result;
      } catch (err) {
        this.sendDone();
        await this.writeError(msg.id, err);
        return;
      }
      void result
        .then(
          (ack) => this.write({ case: "sendAck", value: ack }),
          (err: unknown) => this.writeError(msg.id, err),
        )
        .finally(() => this.sendDone());
    });
  }

  private sendDone(): void {
    this.pendingSends--;
    const slot = this.sendSlot;
    this.sendSlot = undefined;
    slot?.();
  }

  /** Resolves the frame's JIDs and submits it; the returned `result` settles with the send. */
  private async submit(msg: whatsapp.OutgoingChat): Promise<{ result: Promise<whatsapp.SendAck> }> {
    const { directory, link } = this.deps;
    const to = parseJid(msg.to);
    const ids = new Map<string, string>();
    for (const h of handlesOf(msg)) {
      const id = await directory.findAccountId(h);
      if (id !== undefined) ids.set(handleKey(h), id);
    }
    if (to.kind === "user" && !ids.has(handleKey(to.handle)))
      return {
        result: Promise.resolve(
          create(whatsapp.SendAckSchema, { id: msg.id, status: whatsapp.SendAckStatus.NOT_FOUND }),
        ),
      };
    const accountIdOf = (h: Handle) => {
      const id = ids.get(handleKey(h));
      if (id === undefined)
        throw new AppError(Code.NotFound, "USER_NOT_FOUND", "a participant does not exist");
      return id;
    };
    const plan = outgoingChatToSend(msg, { sender: this.address, accountIdOf });
    if (plan.kind === "user") {
      const recipient = to.kind === "user" ? to.handle : undefined;
      if (!recipient) throw new AppError(Code.Internal, "INTERNAL", "a user send without a user JID");
      return { result: link.send(plan.request).then((r) => sendResponseToAck(msg.id, r, recipient)) };
    }
    return {
      result: link.sendGroup(plan.request).then(async (r) => {
        const handles = new Map<string, Handle>();
        for (const accountId of accountIdsOf(r)) {
          const h = await directory.findHandle(accountId);
          if (h) handles.set(accountId, h);
        }
        return groupSendResponseToAck(msg.id, r, (accountId) => {
          const h = handles.get(accountId);
          if (!h) throw new AppError(Code.Internal, "UNKNOWN_ACCOUNT", "a group member has no handle");
          return h;
        });
      }),
    };
  }

  private async writeError(id: string, err: unknown): Promise<void> {
    if (!isAppError(err)) this.ctx.log.error({ err }, "chat frame failed");
    await this.write({ case: "error", value: chatErrorOf(id, err) });
  }

  /** Waits for submitted sends to be answered (after the client half-closed). */
  async drainSends(): Promise<void> {
    await this.sends;
    while (this.pendingSends > 0) await new Promise<void>((resolve) => (this.sendSlot = resolve));
  }

  /** Releases the subscription unless another stream took the device over. */
  async close(): Promise<void> {
    this.closed = true;
    if (!this.displaced) await this.sub?.close();
  }
}

/**
 * Creates the Chat handler. A second stream of the same device on this instance displaces the
 * first (which ends with ABORTED, reason DISPLACED); one on another instance displaces it through
 * the delivery service's subscription takeover.
 */
export function createChatHub(deps: ChatDeps): ChatHub {
  const sessions = new Map<string, ChatSession>();
  const handler: ChatHub["handler"] = async (requests, ctx, out) => {
    const device = await authenticateDevice(deps.db, ctx.metadata);
    const key = keyOf(device);
    const session = new ChatSession(device, out, ctx, deps);
    const previous = sessions.get(key);
    sessions.set(key, session);
    previous?.displace();
    session.subscribe();
    ctx.log.info({ accountId: device.accountId, deviceId: device.deviceId }, "chat stream opened");
    try {
      const reading = (async () => {
        for await (const req of requests) await session.handle(req);
        await session.drainSends();
      })();
      // Reading does not notice a server shutdown (the signal aborts, the request side stays
      // open), so the abort ends the call too: UNAVAILABLE SHUTTING_DOWN, and clients reconnect.
      const onAbort = () => session.abort(ctx.signal.reason as AppError);
      if (ctx.signal.aborted) onAbort();
      else ctx.signal.addEventListener("abort", onAbort, { once: true });
      const outcome = await Promise.race([reading.then(() => undefined), session.ended]).finally(() =>
        ctx.signal.removeEventListener("abort", onAbort),
      );
      if (outcome) {
        reading.catch(() => undefined);
        throw outcome;
      }
    } finally {
      if (sessions.get(key) === session) sessions.delete(key);
      await session.close();
    }
  };
  return {
    handler,
    get connections() {
      return sessions.size;
    },
  };
}
