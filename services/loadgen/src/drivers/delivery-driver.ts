// Drives the delivery service's gRPC API with app credentials: one DeliveryLink (a channel and a
// few multiplexed Connect streams) per app token. Subscriptions and acks always use the Connect
// streams; sends use them too (`delivery-stream`) or unary SendMessage/SendGroupMessage calls
// (`delivery-unary`) over the lean HTTP/2 client of h2-unary.ts.
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  createDeliveryLink,
  messageServiceCodecs,
  type DeliveryLink,
  type DeviceSubscription,
} from "@switchboard/delivery-link";
import { codeName, isAppError } from "@switchboard/errors";
import { methodPath } from "@switchboard/grpc";
import {
  App,
  MessageService,
  EnvelopeType,
  SendGroupMessageRequestSchema,
  SendGroupMessageResponseSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  type SendGroupMessageResponse,
  type SendMessageResponse,
} from "@switchboard/proto";
import type { Logger } from "pino";
import type { AppName } from "../topology.js";
import type { DeviceRef, Driver, SendResult } from "./driver.js";
import { createH2UnaryClient, type H2UnaryClient } from "./h2-unary.js";

/** The delivery driver's modes. */
export type DeliveryMode = "delivery-stream" | "delivery-unary";

/** Options of {@link createDeliveryDriver}. */
export interface DeliveryDriverOptions {
  mode: DeliveryMode;
  /** The delivery service, `host:port`. */
  target: string;
  /** App tokens (`APP_TOKENS` entries) of every app whose accounts are simulated. */
  appTokens: Partial<Record<AppName, string>>;
  /** Connect streams per app token. */
  streams: number;
  /** Unacknowledged deliveries in flight per device (1..1000). */
  window: number;
  /** How long a send may take before it counts as failed (DEADLINE_EXCEEDED / SEND_TIMEOUT). */
  sendTimeoutMs: number;
  log: Logger;
}

const APP_ENUM: Record<AppName, App> = {
  whatsapp: App.WHATSAPP,
  messenger: App.MESSENGER,
  instagram: App.INSTAGRAM,
};

const ACK_FLUSH_MS = 5;
const MAX_ACK_IDS = 1000;

const SEND_MESSAGE_PATH = methodPath(MessageService.method.sendMessage);
const SEND_GROUP_MESSAGE_PATH = methodPath(MessageService.method.sendGroupMessage);
// SendMessage uses the delivery link's hand-written codec (protobuf-es where it has none, as
// createClient would); SendGroupMessage has none.
const encodeSendMessage =
  messageServiceCodecs.sendMessage?.encode ??
  ((init: MessageInitShape<typeof SendMessageRequestSchema>) =>
    toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, init)));
const decodeSendMessage =
  messageServiceCodecs.sendMessage?.decode ??
  ((bytes: Uint8Array) => fromBinary(SendMessageResponseSchema, bytes));
const encodeSendGroupMessage = (init: MessageInitShape<typeof SendGroupMessageRequestSchema>) =>
  toBinary(SendGroupMessageRequestSchema, create(SendGroupMessageRequestSchema, init));
const decodeSendGroupMessage = (bytes: Uint8Array) => fromBinary(SendGroupMessageResponseSchema, bytes);

/** Maps a thrown error to a code and reason for the report. */
export function errorKey(err: unknown): { code: string; reason: string } {
  if (isAppError(err)) return { code: codeName(err.code), reason: err.reason };
  return { code: "UNKNOWN", reason: err instanceof Error ? err.name.toUpperCase() : "CLIENT_ERROR" };
}

function directResult(r: SendMessageResponse): SendResult {
  switch (r.result.case) {
    case "sent":
      return { ok: true, messageId: r.result.value.messageId };
    case "mismatchedDevices":
      return { ok: false, code: "OUTCOME", reason: "MISMATCHED_DEVICES" };
    case "staleDevices":
      return { ok: false, code: "OUTCOME", reason: "STALE_DEVICES" };
    case "recipientNotFound":
      return { ok: false, code: "OUTCOME", reason: "RECIPIENT_NOT_FOUND" };
    default:
      return { ok: false, code: "OUTCOME", reason: "EMPTY_RESULT" };
  }
}

function groupResult(r: SendGroupMessageResponse): SendResult {
  switch (r.result.case) {
    case "sent":
      return { ok: true, messageId: r.result.value.messageId };
    case "mismatchedDevices":
      return { ok: false, code: "OUTCOME", reason: "GROUP_MISMATCHED_DEVICES" };
    case "notAMember":
      return { ok: false, code: "OUTCOME", reason: "NOT_A_GROUP_MEMBER" };
    default:
      return { ok: false, code: "OUTCOME", reason: "EMPTY_RESULT" };
  }
}

const failure = (err: unknown): SendResult => ({ ok: false, ...errorKey(err) });

/**
 * Creates the delivery driver. Acknowledgements are batched per device and flushed every few
 * milliseconds (at most 1,000 ids per frame), as a gateway would.
 */
export function createDeliveryDriver(opts: DeliveryDriverOptions): Driver {
  const links = new Map<AppName, DeliveryLink>();
  const unaryClients = new Map<AppName, H2UnaryClient>();
  const subs = new Map<string, DeviceSubscription>();
  const pendingAcks = new Map<string, string[]>();
  let flushTimer: NodeJS.Timeout | undefined;
  const keyOf = (d: { accountId: string; deviceId: number }) => `${d.accountId}/${d.deviceId}`;

  function link(app: AppName): DeliveryLink {
    let l = links.get(app);
    if (!l) {
      const token = opts.appTokens[app];
      if (!token) throw new Error(`no app token for ${app}: pass --app-tokens ${app}=<token>`);
      l = createDeliveryLink({
        target: opts.target,
        appToken: token,
        streams: opts.streams,
        sendTimeoutMs: opts.sendTimeoutMs,
        log: opts.log.child({ app }),
      });
      links.set(app, l);
    }
    return l;
  }

  // Unary sends get a connection of their own: on the link's connection they would share
  // HTTP/2 flow control (and the socket) with the deliveries coming back. They skip grpc-js,
  // whose per-call machinery cost the load generator about 130 µs of CPU per send.
  function unary(app: AppName): H2UnaryClient {
    let c = unaryClients.get(app);
    if (!c) {
      const token = opts.appTokens[app] ?? "";
      c = createH2UnaryClient({ target: opts.target, metadata: { authorization: `Bearer ${token}` } });
      unaryClients.set(app, c);
    }
    return c;
  }

  async function flushAcks(): Promise<void> {
    if (flushTimer) {
      clearTimeout(flushTimer);
      flushTimer = undefined;
    }
    const writes: Promise<void>[] = [];
    for (const [key, ids] of pendingAcks) {
      const sub = subs.get(key);
      if (!sub) continue;
      for (let i = 0; i < ids.length; i += MAX_ACK_IDS)
        writes.push(sub.ack(ids.slice(i, i + MAX_ACK_IDS)).catch(() => undefined));
    }
    pendingAcks.clear();
    // A failed ack write means the stream broke: the link re-subscribes and the server
    // redelivers, which de-duplication absorbs.
    await Promise.all(writes);
  }

  function queueAck(key: string, id: string) {
    const list = pendingAcks.get(key);
    if (list) list.push(id);
    else pendingAcks.set(key, [id]);
    flushTimer ??= setTimeout(() => void flushAcks(), ACK_FLUSH_MS);
  }

  const sender = (d: DeviceRef) => ({ accountId: d.accountId, deviceId: d.deviceId });

  return {
    mode: opts.mode,

    async registerAccount(req) {
      const r = await link(req.app).directory.registerAccount(
        {
          handle: { app: APP_ENUM[req.app], value: req.handle },
          registrationId: req.registrationId,
          password: req.password,
        },
        { deadlineMs: 60_000 },
      );
      return { accountId: r.account?.id ?? "" };
    },

    async registerDevice(req) {
      const r = await link(req.app).directory.registerDevice(
        { accountId: req.accountId, registrationId: req.registrationId, password: req.password },
        { deadlineMs: 60_000 },
      );
      return { deviceId: r.device?.deviceId ?? 0 };
    },

    async createGroup(requester, members) {
      const r = await link(requester.app).groups.createGroup(
        { requester: sender(requester), memberAccountIds: members.map((m) => m.accountId) },
        { deadlineMs: 60_000 },
      );
      return r.group?.id ?? "";
    },

    subscribe(device, listener) {
      const key = keyOf(device);
      const sub = link(device.app).subscribe(
        sender(device),
        {
          onEnvelope(env) {
            listener.onMessage({
              envelopeId: env.id,
              kind: env.type === EnvelopeType.SERVER_DELIVERY_RECEIPT ? "receipt" : "message",
              content: env.content,
              clientMessageId: env.clientMessageId,
            });
            queueAck(key, env.id);
          },
          onQueueEmpty() {
            listener.onQueueEmpty();
          },
          onDisplaced() {
            listener.onError("ABORTED", "DISPLACED");
          },
          onError(error) {
            const k = errorKey(error);
            listener.onError(k.code, k.reason);
          },
        },
        { window: opts.window },
      );
      subs.set(key, sub);
    },

    async sendDirect(m) {
      const req = {
        sender: sender(m.sender),
        destinationAccountId: m.recipientAccountId,
        messages: m.copies.map((c) => ({
          deviceId: c.deviceId,
          registrationId: c.registrationId,
          type: c.type === "prekey" ? EnvelopeType.PREKEY_MESSAGE : EnvelopeType.CIPHERTEXT,
          content: c.content,
        })),
        clientMessageId: m.clientMessageId,
        clientTimestampMs: BigInt(m.clientTimestampMs),
        noDeliveryReceipt: m.noDeliveryReceipt,
      };
      try {
        const l = link(m.sender.app);
        return directResult(
          opts.mode === "delivery-unary"
            ? await unary(m.sender.app).call(
                SEND_MESSAGE_PATH,
                encodeSendMessage(req),
                decodeSendMessage,
                opts.sendTimeoutMs,
              )
            : await l.send(req),
        );
      } catch (err) {
        return failure(err);
      }
    },

    async sendGroup(m) {
      const req = {
        sender: sender(m.sender),
        groupId: m.groupId,
        content: m.content,
        clientMessageId: m.clientMessageId,
        clientTimestampMs: BigInt(m.clientTimestampMs),
      };
      try {
        const l = link(m.sender.app);
        return groupResult(
          opts.mode === "delivery-unary"
            ? await unary(m.sender.app).call(
                SEND_GROUP_MESSAGE_PATH,
                encodeSendGroupMessage(req),
                decodeSendGroupMessage,
                opts.sendTimeoutMs,
              )
            : await l.sendGroup(req),
        );
      } catch (err) {
        return failure(err);
      }
    },

    flushAcks,

    async close() {
      await flushAcks();
      await Promise.all([
        ...[...links.values()].map((l) => l.close()),
        ...[...unaryClients.values()].map((c) => c.close()),
      ]);
      links.clear();
      unaryClients.clear();
      subs.clear();
    },
  };
}
