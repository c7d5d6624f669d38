import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AppError, Code, isAppError } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import { Encoded, type CallContext, type ServiceImpl } from "@switchboard/grpc";
import type { MessageService } from "@switchboard/proto";
import {
  newEnvelope,
  EnvelopeType,
  ConnectResponseSchema,
  type ConnectRequest,
  type ReceiveMessagesResponseSchema,
  type Envelope,
  type SendGroupMessageRequest,
  type SendGroupMessageResponseSchema,
  type SendMessageRequest,
  type SendMessageResponseSchema,
  type SendMultiRecipientMessageResponseSchema,
} from "@switchboard/proto";
import {
  findDeviceCredential,
  listDevices,
  listGroupMembers,
  readSendPolicies,
  type Database,
} from "@switchboard/storage";
import { create, toBinary } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import type { ActingDevice, Authenticator, Principal } from "../auth/principal.js";
import type { RateLimiter } from "@switchboard/ratelimit";
import type { Logger } from "pino";
import type { AckPipeline } from "../delivery/ack-pipeline.js";
import { checkLimits, type RateLimitPolicies } from "../delivery/rate-limits.js";
import { encodeMessageEvent } from "../delivery/events.js";
import type { DirectSend, GroupSend, SendOutcome, SendPipeline } from "../delivery/send-pipeline.js";
import type { DeliverySink, Subscription, SubscriptionManager } from "../delivery/subscriptions.js";
import { checkDeviceList } from "../domain/device-list.js";
import { decideDirect } from "../domain/relationship-policy.js";
import {
  invalid,
  MAX_ACK_IDS,
  MAX_MESSAGES_PER_SEND,
  MAX_REPORT_TAG_BYTES,
  requireCiphertext,
  requireClientMessageId,
  requireDeviceId,
  requireUuid,
  windowOrDefault,
} from "../domain/limits.js";
import { translateError } from "../errors.js";
import { createFrameBatcher, encodeSentResponse, encodeSentResult } from "./connect-wire.js";
import type { Metrics } from "../metrics.js";
import type { SealedSender } from "../delivery/sealed-send.js";

type SendResponse = MessageInitShape<typeof SendMessageResponseSchema>;

/** Sends and acks one Connect stream may have in flight before the server stops reading it. */
export const MAX_PENDING_PER_STREAM = 2_000;
/** Call metadata by which a Connect client opts in to ConnectResponseBatch frames. */
export const FRAME_BATCHING_METADATA = "switchboard-frame-batching";
/** At most this many frames in one ConnectRequestBatch. */
const MAX_BATCH_FRAMES_IN = 1_000;
type GroupResponse = MessageInitShape<typeof SendGroupMessageResponseSchema>;

const DIRECT_TYPES = new Set([
  EnvelopeType.CIPHERTEXT,
  EnvelopeType.PREKEY_MESSAGE,
  EnvelopeType.SEALED_SENDER,
  EnvelopeType.PLAINTEXT_CONTENT,
]);

/** Dependencies of the MessageService handlers. */
export interface MessageServiceDeps {
  db: Kysely<Database>;
  auth: Authenticator;
  fanout: Fanout;
  sends: SendPipeline;
  acks: AckPipeline;
  subscriptions: SubscriptionManager;
  metrics: Metrics;
  maxCiphertextBytes: number;
  limiter: RateLimiter;
  policies: RateLimitPolicies;
  log: Logger;
  /** Sealed-sender sends (unary SendMessage with an `unidentified-access-key`); see sealed-send.ts. */
  sealed?: SealedSender;
}

function reportTag(tag: Uint8Array): Uint8Array | null {
  if (tag.byteLength > MAX_REPORT_TAG_BYTES)
    throw invalid("FIELD_TOO_LONG", `report_tag must be at most ${MAX_REPORT_TAG_BYTES} bytes`);
  return tag.byteLength === 0 ? null : tag;
}

/** Validates a SendMessageRequest into a pipeline send (throws INVALID_ARGUMENT). */
export function toDirectSend(
  req: SendMessageRequest,
  sender: ActingDevice,
  maxCiphertextBytes: number,
): DirectSend {
  const destinationAccountId = requireUuid(req.destinationAccountId, "destination_account_id");
  if (req.messages.length === 0)
    throw invalid("NO_MESSAGES", "messages must hold one ciphertext per recipient device");
  if (req.messages.length > MAX_MESSAGES_PER_SEND)
    throw invalid("TOO_MANY_MESSAGES", `at most ${MAX_MESSAGES_PER_SEND} messages per send`);
  const seen = new Set<number>();
  const messages = req.messages.map((m, i) => {
    requireDeviceId(m.deviceId, `messages[${i}].device_id`);
    if (seen.has(m.deviceId))
      throw invalid("DUPLICATE_DEVICE", `messages[${i}] repeats device ${m.deviceId}`);
    seen.add(m.deviceId);
    if (!DIRECT_TYPES.has(m.type))
      throw invalid("INVALID_ENVELOPE_TYPE", `messages[${i}].type is not valid for a one-to-one send`);
    return {
      deviceId: m.deviceId,
      registrationId: m.registrationId,
      type: m.type,
      content: requireCiphertext(m.content, maxCiphertextBytes, `messages[${i}].content`),
    };
  });
  return {
    kind: "direct",
    sender,
    destinationAccountId,
    messages,
    clientMessageId: requireClientMessageId(req.clientMessageId),
    clientTimestampMs: Number(req.clientTimestampMs),
    urgent: req.urgent,
    forwarded: req.forwarded,
    reportTag: reportTag(req.reportTag),
    noDeliveryReceipt: req.noDeliveryReceipt,
  };
}

/** Validates a SendGroupMessageRequest into a pipeline send. */
export function toGroupSend(
  req: SendGroupMessageRequest,
  sender: ActingDevice,
  maxCiphertextBytes: number,
): GroupSend {
  return {
    kind: "group",
    sender,
    groupId: requireUuid(req.groupId, "group_id"),
    content: requireCiphertext(req.content, maxCiphertextBytes),
    clientMessageId: requireClientMessageId(req.clientMessageId),
    clientTimestampMs: Number(req.clientTimestampMs),
    urgent: req.urgent,
    forwarded: req.forwarded,
    reportTag: reportTag(req.reportTag),
    expected:
      req.expectedRecipients.length === 0
        ? undefined
        : req.expectedRecipients.map((r, i) => ({
            accountId: requireUuid(r.accountId, `expected_recipients[${i}].account_id`),
            devices: r.devices.map((d) => ({ deviceId: d.deviceId, registrationId: d.registrationId })),
          })),
  };
}

const sentToProto = (o: { messageId: string; serverTimestampMs: number; duplicate: boolean }) => ({
  messageId: o.messageId,
  serverTimestampMs: BigInt(o.serverTimestampMs),
  duplicate: o.duplicate,
});

/** Maps a pipeline outcome of a one-to-one send to the wire response. */
export function directOutcomeToProto(o: SendOutcome): SendResponse {
  switch (o.kind) {
    case "sent":
      return { result: { case: "sent", value: sentToProto(o) } };
    case "mismatched":
      return {
        result: {
          case: "mismatchedDevices",
          value: { accountId: o.accountId, missingDevices: o.missing, extraDevices: o.extra },
        },
      };
    case "stale":
      return { result: { case: "staleDevices", value: { accountId: o.accountId, staleDevices: o.stale } } };
    case "recipient_not_found":
      return { result: { case: "recipientNotFound", value: {} } };
    default:
      throw new AppError(Code.Internal, "INTERNAL", "internal error");
  }
}

/** Maps a pipeline outcome of a group send to the wire response. */
export function groupOutcomeToProto(o: SendOutcome): GroupResponse {
  switch (o.kind) {
    case "sent":
      return { result: { case: "sent", value: sentToProto(o) } };
    case "group_mismatched":
      return {
        result: {
          case: "mismatchedDevices",
          value: {
            mismatched: o.mismatched.map((m) => ({
              accountId: m.accountId,
              missingDevices: m.missing,
              extraDevices: m.extra,
            })),
            stale: o.stale.map((s) => ({ accountId: s.accountId, staleDevices: s.stale })),
          },
        },
      };
    case "not_a_member":
      return { result: { case: "notAMember", value: {} } };
    default:
      throw new AppError(Code.Internal, "INTERNAL", "internal error");
  }
}

/** Maps a pipeline outcome of a multi-recipient sealed send to the wire response. */
export function multiOutcomeToProto(
  o: SendOutcome,
): MessageInitShape<typeof SendMultiRecipientMessageResponseSchema> {
  const r = groupOutcomeToProto(o).result;
  if (r?.case === "sent" || r?.case === "mismatchedDevices") return { result: r };
  throw new AppError(Code.Internal, "INTERNAL", "internal error");
}

/** The MessageService handlers (unary, server-streaming and the multiplexed Connect stream). */
export function createMessageService(deps: MessageServiceDeps): ServiceImpl<typeof MessageService> {
  const { auth } = deps;

  /**
   * Ephemeral sends skip PostgreSQL: checked against the current devices and published to
   * whichever streams hold them now. Offline devices never see them.
   */
  async function sendEphemeral(send: DirectSend | GroupSend): Promise<SendOutcome> {
    const device = `${send.sender.accountId}.${send.sender.deviceId}`;
    const peer = send.kind === "direct" ? send.destinationAccountId : send.groupId;
    const [limited] = await checkLimits(deps.limiter, deps.log, [
      [
        { policy: deps.policies.send, subject: device },
        { policy: deps.policies.pair, subject: `${device}>${peer}` },
      ],
    ]);
    if (limited) throw limited;
    const now = Date.now();
    const messageId = randomUUID();
    const base = {
      id: messageId,
      clientMessageId: send.clientMessageId,
      source: { accountId: send.sender.accountId, deviceId: send.sender.deviceId },
      sourceApp: send.sender.app,
      sourceProviderId: send.sender.providerId,
      serverTimestampMs: BigInt(now),
      clientTimestampMs: BigInt(send.clientTimestampMs),
      ephemeral: true,
      urgent: false,
      forwarded: send.forwarded,
      sequence: 0n,
    };
    const events: Array<{ key: { accountId: string; deviceId: number }; payload: Uint8Array }> = [];
    const push = (env: Envelope) =>
      events.push({
        key: { accountId: env.destination?.accountId ?? "", deviceId: env.destination?.deviceId ?? 0 },
        payload: encodeMessageEvent(env),
      });
    if (send.kind === "direct") {
      const current = await listDevices(deps.db, [send.destinationAccountId]);
      if (current.length === 0) return { kind: "recipient_not_found" };
      const self = send.destinationAccountId === send.sender.accountId ? send.sender.deviceId : undefined;
      const check = checkDeviceList(current, send.messages, self);
      if (check.kind === "mismatched")
        return {
          kind: "mismatched",
          accountId: send.destinationAccountId,
          missing: check.missing,
          extra: check.extra,
        };
      if (check.kind === "stale")
        return { kind: "stale", accountId: send.destinationAccountId, stale: check.stale };
      // Typing and other ephemeral signals reach only accounts that accepted the sender (or take
      // strangers' messages marked): never a blocker, never a minor from an adult stranger.
      const facts = await readSendPolicies(
        deps.db,
        [
          { owner: send.destinationAccountId, peer: send.sender.accountId },
          { owner: send.sender.accountId, peer: send.destinationAccountId },
        ],
        [send.sender.accountId, send.destinationAccountId],
      );
      const action = decideDirect(facts, send.sender.accountId, send.destinationAccountId).action;
      if (action === "drop" || action === "hold") {
        deps.metrics.sends.inc({ kind: "ephemeral", outcome: "sent" });
        return { kind: "sent", messageId: randomUUID(), serverTimestampMs: now, duplicate: false };
      }
      const app = (await auth.accountApp(send.destinationAccountId))?.app ?? 0;
      for (const m of send.messages) {
        push(
          newEnvelope({
            ...base,
            type: m.type,
            destination: { accountId: send.destinationAccountId, deviceId: m.deviceId },
            destinationApp: app,
            content: m.content,
          }),
        );
      }
    } else {
      const members = await listGroupMembers(deps.db, send.groupId);
      if (!members.includes(send.sender.accountId)) return { kind: "not_a_member" };
      for (const d of await listDevices(deps.db, members)) {
        if (d.accountId === send.sender.accountId && d.deviceId === send.sender.deviceId) continue;
        const app = (await auth.accountApp(d.accountId))?.app ?? 0;
        push(
          newEnvelope({
            ...base,
            type: EnvelopeType.SENDER_KEY_MESSAGE,
            groupId: send.groupId,
            destination: { accountId: d.accountId, deviceId: d.deviceId },
            destinationApp: app,
            content: send.content,
          }),
        );
      }
    }
    await deps.fanout.publish(events);
    deps.metrics.sends.inc({ kind: "ephemeral", outcome: "sent" });
    return { kind: "sent", messageId, serverTimestampMs: now, duplicate: false };
  }

  async function prepareDirect(principal: Principal, req: SendMessageRequest) {
    const sender = await auth.actingDevice(principal, req.sender, "sender");
    const send = toDirectSend(req, sender, deps.maxCiphertextBytes);
    return req.ephemeral ? () => sendEphemeral(send) : () => deps.sends.submit(send);
  }

  async function prepareGroup(principal: Principal, req: SendGroupMessageRequest) {
    const sender = await auth.actingDevice(principal, req.sender, "sender");
    const send = toGroupSend(req, sender, deps.maxCiphertextBytes);
    return req.ephemeral ? () => sendEphemeral(send) : () => deps.sends.submit(send);
  }

  async function requireExistingDevice(device: ActingDevice) {
    if (!(await findDeviceCredential(deps.db, device.accountId, device.deviceId))) {
      throw new AppError(
        Code.NotFound,
        "DEVICE_NOT_FOUND",
        `device ${device.deviceId} of account ${device.accountId} not found`,
      );
    }
  }

  function validateAckIds(ids: readonly string[]): string[] {
    if (ids.length > MAX_ACK_IDS) throw invalid("TOO_MANY_IDS", `at most ${MAX_ACK_IDS} ids per ack`);
    return ids.map((id, i) => requireUuid(id, `message_ids[${i}]`));
  }

  const errorStatus = (err: unknown, ctx: CallContext) => {
    const known = isAppError(err) ? err : translateError(err);
    if (known) {
      if (known.code === Code.Unavailable) ctx.log.warn({ err }, "stream frame failed");
      return {
        code: known.code,
        reason: known.reason,
        message: known.message,
        retryAfterMs: known.retryAfterMs ?? 0,
      };
    }
    ctx.log.error({ err }, "stream frame failed");
    return { code: Code.Internal, reason: "INTERNAL", message: "internal error" };
  };

  return {
    async sendMessage(req, ctx) {
      if (deps.sealed?.isSealed(ctx.metadata))
        return directOutcomeToProto(await deps.sealed.send(req, ctx.metadata));
      const principal = await auth.authenticate(ctx.metadata);
      const run = await prepareDirect(principal, req);
      const o = await run();
      // The common answer is hand-encoded, as on Connect (connect-wire.ts); the rest via protobuf-es.
      return o.kind === "sent"
        ? new Encoded<typeof SendMessageResponseSchema>(encodeSentResponse(o))
        : directOutcomeToProto(o);
    },

    async sendMultiRecipientMessage(req, ctx) {
      // Sealed only: an `authorization` header is not looked at, a missing key is refused.
      if (!deps.sealed)
        throw new AppError(Code.Unimplemented, "SEALED_SENDER_UNSUPPORTED", "sealed sender is not enabled");
      return multiOutcomeToProto(await deps.sealed.sendMultiRecipient(req, ctx.metadata));
    },

    async sendGroupMessage(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const run = await prepareGroup(principal, req);
      return groupOutcomeToProto(await run());
    },

    async receiveMessages(req, ctx, out) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const window = windowOrDefault(req.window);
      await requireExistingDevice(device);
      let endReason: string | undefined;
      let wake: () => void = () => {};
      const ended = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const sink: DeliverySink = {
        deliver: (wire) =>
          void out.send(new Encoded<typeof ReceiveMessagesResponseSchema>(wire)).catch(() => wake()),
        queueEmpty: () =>
          void out.send({ frame: { case: "queueEmpty", value: { device } } }).catch(() => wake()),
        closed: (reason) => {
          endReason = reason;
          wake();
        },
      };
      const sub = await deps.subscriptions.subscribe(device, window, sink);
      const onAbort = () => wake();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        await ended;
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        await sub.close("stream_closed");
      }
      if (endReason === "displaced")
        throw new AppError(Code.Aborted, "DISPLACED", "another stream subscribed this device");
      if (endReason === "removed")
        throw new AppError(Code.Unauthenticated, "DEVICE_REMOVED", "the device was removed");
      if (endReason === "shutdown")
        throw new AppError(Code.Unavailable, "SHUTTING_DOWN", "the server is shutting down; reconnect");
    },

    async ackMessages(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const ids = validateAckIds(req.messageIds);
      const local = deps.subscriptions.find(device);
      local?.acked(ids);
      const acknowledged = await deps.acks.ack(device, ids, local === undefined);
      return { acknowledged };
    },

    async connect(requests, ctx, out) {
      const principal = await auth.authenticate(ctx.metadata);
      const mine = new Map<string, Subscription>();
      // A device credential's stream loses access once its device is removed (on any instance):
      // the subscription closes at once (a `displaced` frame) and the next frame ends the stream
      // UNAUTHENTICATED (DEVICE_REMOVED) instead of being served on the stale principal.
      let deviceRemoved = false;
      const key = (d: { accountId: string; deviceId: number }) => `${d.accountId}/${d.deviceId}`;
      const write = (
        frame: MessageInitShape<typeof ConnectResponseSchema> | Encoded<typeof ConnectResponseSchema>,
      ) => {
        out.send(frame).catch(() => {
          // The stream is gone; the request loop ends with it.
        });
      };
      // Clients that opted in get the frames of one event-loop turn as one ConnectResponseBatch.
      const batched =
        ctx.metadata.get(FRAME_BATCHING_METADATA)[0] === "1"
          ? createFrameBatcher((bytes) => write(new Encoded<typeof ConnectResponseSchema>(bytes)))
          : undefined;
      const send = batched
        ? (frame: MessageInitShape<typeof ConnectResponseSchema> | Encoded<typeof ConnectResponseSchema>) =>
            batched(
              frame instanceof Encoded
                ? frame.bytes
                : toBinary(ConnectResponseSchema, create(ConnectResponseSchema, frame)),
            )
        : write;
      const pending = new Set<Promise<unknown>>();
      const track = (p: Promise<unknown>) => {
        pending.add(p);
        void p.finally(() => pending.delete(p));
      };
      const handle = async (f: ConnectRequest["frame"], inBatch: boolean): Promise<void> => {
        // Backpressure: with too many sends and acks in flight, stop reading frames until some
        // finish, so HTTP/2 flow control slows the client instead of memory growing.
        while (pending.size >= MAX_PENDING_PER_STREAM) await Promise.race(pending);
        if (deviceRemoved)
          throw new AppError(Code.Unauthenticated, "DEVICE_REMOVED", "the device was removed");
        switch (f.case) {
          case "batch": {
            const error = inBatch
              ? { reason: "NESTED_BATCH", message: "a batch may not contain a batch" }
              : f.value.frames.length > MAX_BATCH_FRAMES_IN
                ? { reason: "BATCH_TOO_LARGE", message: `at most ${MAX_BATCH_FRAMES_IN} frames per batch` }
                : undefined;
            if (error) {
              send({
                frame: { case: "frameError", value: { error: { code: Code.InvalidArgument, ...error } } },
              });
              break;
            }
            for (const sub of f.value.frames) await handle(sub.frame, true);
            break;
          }
          case "subscribe": {
            try {
              const device = await auth.actingDevice(principal, f.value.device, "subscribe.device");
              const window = windowOrDefault(f.value.window);
              await requireExistingDevice(device);
              await mine.get(key(device))?.close("unsubscribed");
              const address = { accountId: device.accountId, deviceId: device.deviceId };
              const sub = await deps.subscriptions.subscribe(address, window, {
                deliver: (wire) => send(new Encoded<typeof ConnectResponseSchema>(wire)),
                queueEmpty: () => send({ frame: { case: "queueEmpty", value: { device: address } } }),
                closed: (reason) => {
                  if (mine.get(key(address)) === sub) mine.delete(key(address));
                  if (reason === "removed" && principal.kind === "device") deviceRemoved = true;
                  if (reason === "displaced" || reason === "removed")
                    send({ frame: { case: "displaced", value: { device: address } } });
                },
              });
              mine.set(key(device), sub);
            } catch (err) {
              send({
                frame: {
                  case: "frameError",
                  value: { device: f.value.device, error: errorStatus(err, ctx) },
                },
              });
            }
            break;
          }
          case "unsubscribe": {
            const d = f.value.device;
            if (d) {
              const sub = mine.get(key(d));
              mine.delete(key(d));
              await sub?.close("unsubscribed");
            }
            break;
          }
          case "send":
          case "sendGroup": {
            const correlationId = f.value.correlationId;
            try {
              if (!f.value.request) throw invalid("REQUEST_REQUIRED", "request is required");
              const isGroup = f.case === "sendGroup";
              const run = isGroup
                ? await prepareGroup(principal, f.value.request)
                : await prepareDirect(principal, f.value.request);
              // Submitted in frame order (lanes keep it); results may come back in any order.
              track(
                run().then(
                  (o) =>
                    // The common case is hand-encoded (connect-wire.ts); the rest via protobuf-es.
                    !isGroup && o.kind === "sent"
                      ? send(new Encoded<typeof ConnectResponseSchema>(encodeSentResult(correlationId, o)))
                      : send({
                          frame: {
                            case: "sendResult",
                            value: {
                              correlationId,
                              result: isGroup
                                ? { case: "sendGroup", value: groupOutcomeToProto(o) }
                                : { case: "send", value: directOutcomeToProto(o) },
                            },
                          },
                        }),
                  (err: unknown) =>
                    send({
                      frame: {
                        case: "sendResult",
                        value: { correlationId, result: { case: "error", value: errorStatus(err, ctx) } },
                      },
                    }),
                ),
              );
            } catch (err) {
              send({
                frame: {
                  case: "sendResult",
                  value: { correlationId, result: { case: "error", value: errorStatus(err, ctx) } },
                },
              });
            }
            break;
          }
          case "ack": {
            try {
              const device = await auth.actingDevice(principal, f.value.device, "ack.device");
              const ids = validateAckIds(f.value.messageIds);
              const local = deps.subscriptions.find(device);
              local?.acked(ids);
              const address = f.value.device;
              track(
                deps.acks.ack(device, ids, local === undefined).catch((err: unknown) =>
                  send({
                    frame: {
                      case: "frameError",
                      value: { device: address, error: errorStatus(err, ctx) },
                    },
                  }),
                ),
              );
            } catch (err) {
              send({
                frame: {
                  case: "frameError",
                  value: { device: f.value.device, error: errorStatus(err, ctx) },
                },
              });
            }
            break;
          }
          default:
            send({
              frame: {
                case: "frameError",
                value: {
                  error: {
                    code: Code.InvalidArgument,
                    reason: "EMPTY_FRAME",
                    message: "frame must be set",
                  },
                },
              },
            });
        }
      };
      try {
        for await (const req of requests) await handle(req.frame, false);
        // The client half-closed: finish its sends and acks before closing our side.
        await Promise.allSettled([...pending]);
      } finally {
        await Promise.all([...mine.values()].map((s) => s.close("stream_closed")));
      }
    },
  };
}
