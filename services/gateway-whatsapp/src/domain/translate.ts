// Translation between the WhatsApp-style chat frames and the delivery API's Envelope and send
// messages. Pure: every lookup (JID ⇄ account id) is resolved by the caller and passed in, so the
// functions are total over their inputs and property-tested for round trips (translate.test.ts).
import { create } from "@bufbuild/protobuf";
import { AppError, Code, isAppError } from "@switchboard/errors";
import {
  App,
  newAddress,
  newEnvelope,
  newSendMessageRequest,
  EnvelopeType,
  SendGroupMessageRequestSchema,
  whatsapp,
  type Address,
  type Envelope,
  type Handle,
  type SendGroupMessageRequest,
  type SendGroupMessageResponse,
  type SendMessageRequest,
  type SendMessageResponse,
} from "@switchboard/proto";
import { formatGroupJid, formatUserJid, handleKey, parseJid, parseUserJid, type UserJid } from "./jid.js";

const { MessageKind, SendAckStatus } = whatsapp;
type MessageKind = whatsapp.MessageKind;

const KIND_TO_TYPE: ReadonlyMap<MessageKind, EnvelopeType> = new Map([
  [MessageKind.MSG, EnvelopeType.CIPHERTEXT],
  [MessageKind.PKMSG, EnvelopeType.PREKEY_MESSAGE],
  [MessageKind.SKMSG, EnvelopeType.SENDER_KEY_MESSAGE],
  [MessageKind.SEALED, EnvelopeType.SEALED_SENDER],
  [MessageKind.PLAINTEXT, EnvelopeType.PLAINTEXT_CONTENT],
]);
const TYPE_TO_KIND: ReadonlyMap<EnvelopeType, MessageKind> = new Map(
  [...KIND_TO_TYPE].map(([k, t]) => [t, k]),
);

/** The Envelope type of a message kind; MESSAGE_KIND_UNSPECIFIED fails INVALID_ARGUMENT (INVALID_KIND). */
export function kindToEnvelopeType(kind: MessageKind): EnvelopeType {
  const type = KIND_TO_TYPE.get(kind);
  if (type === undefined) throw new AppError(Code.InvalidArgument, "INVALID_KIND", "kind must be set");
  return type;
}

/** The message kind of an Envelope type (UNSPECIFIED for receipts and unknown types). */
export function envelopeTypeToKind(type: EnvelopeType): MessageKind {
  return TYPE_TO_KIND.get(type) ?? MessageKind.UNSPECIFIED;
}

const EMPTY = new Uint8Array(0);

/**
 * Renders an Envelope queued for this device as a chat frame: a SERVER_DELIVERY_RECEIPT becomes a
 * ServerReceipt, anything else an IncomingChat. `sourceHandle` is the sending account's handle
 * (undefined for sealed sender, which has no source).
 */
export function envelopeToChatFrame(
  envelope: Envelope,
  sourceHandle: Handle | undefined,
): { case: "message"; value: whatsapp.IncomingChat } | { case: "receipt"; value: whatsapp.ServerReceipt } {
  const from =
    envelope.source !== undefined && sourceHandle !== undefined
      ? formatUserJid(sourceHandle, envelope.source.deviceId)
      : "";
  if (envelope.type === EnvelopeType.SERVER_DELIVERY_RECEIPT) {
    return {
      case: "receipt",
      value: {
        $typeName: "switchboard.gateway.whatsapp.v1.ServerReceipt",
        serverId: envelope.id,
        id: envelope.clientMessageId,
        from,
        t: envelope.serverTimestampMs,
      },
    };
  }
  // Object literals, not `create(...Schema, …)`: one per message delivered, and `create` walks the
  // schema for each (see @switchboard/proto's envelope.ts). The type requires every field.
  return {
    case: "message",
    value: {
      $typeName: "switchboard.gateway.whatsapp.v1.IncomingChat",
      serverId: envelope.id,
      id: envelope.clientMessageId,
      from,
      group: envelope.groupId === "" ? "" : formatGroupJid(envelope.groupId),
      kind: envelopeTypeToKind(envelope.type),
      ciphertext: envelope.content,
      t: envelope.clientTimestampMs,
      serverT: envelope.serverTimestampMs,
      ephemeral: envelope.ephemeral,
      forwarded: envelope.forwarded,
      reportTag: envelope.reportTag,
      urgent: envelope.urgent,
      senderRegistrationId: envelope.sourceRegistrationId,
      sequence: envelope.sequence,
      thirdPartyProvider: envelope.sourceApp === App.THIRD_PARTY ? envelope.sourceProviderId : "",
      messageRequest: envelope.messageRequest,
      serverFrankingTag: envelope.serverFrankingTag,
    },
  };
}

/** What an IncomingChat or ServerReceipt does not carry: who sent it (by id) and to which device. */
export interface EnvelopeContext {
  /** The sending account's id (ignored when `from` is empty). */
  sourceAccountId: string;
  /** The receiving device. */
  destination: Address;
  /** The receiving account's app. */
  destinationApp: App;
}

function sourceOf(from: string, accountId: string): { jid?: UserJid; source?: Address } {
  if (from === "") return {};
  const jid = parseUserJid(from);
  return { jid, source: newAddress({ accountId, deviceId: jid.device ?? 0 }) };
}

/**
 * The inverse of {@link envelopeToChatFrame} for an IncomingChat: the Envelope it renders. This is
 * how a client of the native API (the SDK's WhatsApp transport) rebuilds envelopes.
 */
export function incomingChatToEnvelope(msg: whatsapp.IncomingChat, ctx: EnvelopeContext): Envelope {
  const { jid, source } = sourceOf(msg.from, ctx.sourceAccountId);
  return newEnvelope({
    id: msg.serverId,
    clientMessageId: msg.id,
    type: kindToEnvelopeType(msg.kind),
    source,
    sourceApp: jid?.handle.app ?? App.UNSPECIFIED,
    sourceProviderId: msg.thirdPartyProvider,
    sourceRegistrationId: msg.senderRegistrationId,
    destination: ctx.destination,
    destinationApp: ctx.destinationApp,
    content: msg.ciphertext,
    serverTimestampMs: msg.serverT,
    clientTimestampMs: msg.t,
    ephemeral: msg.ephemeral,
    urgent: msg.urgent,
    groupId: msg.group === "" ? "" : groupIdOf(msg.group),
    forwarded: msg.forwarded,
    reportTag: msg.reportTag,
    sequence: msg.sequence,
    messageRequest: msg.messageRequest,
    serverFrankingTag: msg.serverFrankingTag,
  });
}

/** The inverse of {@link envelopeToChatFrame} for a ServerReceipt. */
export function serverReceiptToEnvelope(receipt: whatsapp.ServerReceipt, ctx: EnvelopeContext): Envelope {
  const { jid, source } = sourceOf(receipt.from, ctx.sourceAccountId);
  return newEnvelope({
    id: receipt.serverId,
    clientMessageId: receipt.id,
    type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
    source,
    sourceApp: jid?.handle.app ?? App.UNSPECIFIED,
    sourceProviderId: jid?.handle.providerId ?? "",
    destination: ctx.destination,
    destinationApp: ctx.destinationApp,
    content: EMPTY,
    serverTimestampMs: receipt.t,
  });
}

function groupIdOf(jid: string): string {
  const parsed = parseJid(jid);
  if (parsed.kind !== "group")
    throw new AppError(Code.InvalidArgument, "GROUP_JID_REQUIRED", `${jid} is not a group JID`);
  return parsed.groupId;
}

/** An OutgoingChat as a delivery send. */
export type SendPlan =
  { kind: "user"; request: SendMessageRequest } | { kind: "group"; request: SendGroupMessageRequest };

/** The user JIDs (handles) an OutgoingChat names, which the caller resolves to account ids first. */
export function handlesOf(msg: whatsapp.OutgoingChat): Handle[] {
  const out = new Map<string, Handle>();
  const to = parseJid(msg.to);
  if (to.kind === "user") out.set(handleKey(to.handle), to.handle);
  for (const p of msg.participants) {
    const jid = parseUserJid(p.jid);
    out.set(handleKey(jid.handle), jid.handle);
  }
  return [...out.values()];
}

const invalid = (reason: string, message: string) => new AppError(Code.InvalidArgument, reason, message);

function deviceOf(jid: UserJid, raw: string): number {
  if (jid.device === undefined) throw invalid("DEVICE_JID_REQUIRED", `${raw} names no device`);
  return jid.device;
}

/**
 * Translates an OutgoingChat into a delivery send for `sender`. A user `to` needs one
 * participant per recipient device (device JIDs of that user) with its ciphertext; a group `to`
 * needs `group_ciphertext`, and its optional participants (device JIDs with registration ids and
 * no ciphertext) name the member devices the sender distributed its sender key to
 * (`expected_recipients`). `accountIdOf` returns the account id of every handle in
 * {@link handlesOf}. `no_server_receipt` becomes `no_delivery_receipt` of a one-to-one send; a
 * group send accepts and ignores it, since group messages never get server receipts. Throws
 * INVALID_ARGUMENT for malformed frames.
 */
export function outgoingChatToSend(
  msg: whatsapp.OutgoingChat,
  ctx: { sender: Address; accountIdOf: (handle: Handle) => string },
): SendPlan {
  const to = parseJid(msg.to);
  const common = {
    sender: ctx.sender,
    clientMessageId: msg.id,
    clientTimestampMs: msg.t,
    ephemeral: msg.ephemeral,
    urgent: msg.urgent,
    forwarded: msg.forwarded,
    reportTag: msg.reportTag,
  };
  if (to.kind === "group") {
    const byAccount = new Map<string, { deviceId: number; registrationId: number }[]>();
    for (const p of msg.participants) {
      if (p.ciphertext.byteLength > 0 || p.kind !== MessageKind.UNSPECIFIED)
        throw invalid(
          "UNEXPECTED_CIPHERTEXT",
          "participants of a group send name devices only; the ciphertext is group_ciphertext",
        );
      const jid = parseUserJid(p.jid);
      const accountId = ctx.accountIdOf(jid.handle);
      let devices = byAccount.get(accountId);
      if (devices === undefined) byAccount.set(accountId, (devices = []));
      devices.push({ deviceId: deviceOf(jid, p.jid), registrationId: p.registrationId });
    }
    return {
      kind: "group",
      request: create(SendGroupMessageRequestSchema, {
        ...common,
        groupId: to.groupId,
        content: msg.groupCiphertext,
        expectedRecipients: [...byAccount].map(([accountId, devices]) => ({ accountId, devices })),
      }),
    };
  }
  if (to.device !== undefined)
    throw invalid("USER_JID_REQUIRED", "`to` must be a user JID, not a device JID");
  if (msg.groupCiphertext.byteLength > 0)
    throw invalid("UNEXPECTED_GROUP_CIPHERTEXT", "group_ciphertext is for group JIDs only");
  const toKey = handleKey(to.handle);
  return {
    kind: "user",
    request: newSendMessageRequest({
      ...common,
      noDeliveryReceipt: msg.noServerReceipt,
      destinationAccountId: ctx.accountIdOf(to.handle),
      messages: msg.participants.map((p) => {
        const jid = parseUserJid(p.jid);
        if (handleKey(jid.handle) !== toKey)
          throw invalid("PARTICIPANT_MISMATCH", `${p.jid} is not a device of ${msg.to}`);
        return {
          deviceId: deviceOf(jid, p.jid),
          registrationId: p.registrationId,
          type: kindToEnvelopeType(p.kind),
          content: p.ciphertext,
        };
      }),
    }),
  };
}

/**
 * The inverse of {@link outgoingChatToSend}: the OutgoingChat a client writes for a delivery send.
 * `handleOf` returns the handle of every account the request names. A group send's OutgoingChat
 * never sets `no_server_receipt` (a group send has no such flag).
 */
export function sendToOutgoingChat(
  plan: SendPlan,
  ctx: { handleOf: (accountId: string) => Handle },
): whatsapp.OutgoingChat {
  const r = plan.request;
  const common = {
    id: r.clientMessageId,
    t: r.clientTimestampMs,
    ephemeral: r.ephemeral,
    forwarded: r.forwarded,
    reportTag: r.reportTag,
    urgent: r.urgent,
  };
  if (plan.kind === "group") {
    const g = plan.request;
    return create(whatsapp.OutgoingChatSchema, {
      ...common,
      to: formatGroupJid(g.groupId),
      groupCiphertext: g.content,
      participants: g.expectedRecipients.flatMap((rd) =>
        rd.devices.map((d) => ({
          jid: formatUserJid(ctx.handleOf(rd.accountId), d.deviceId),
          registrationId: d.registrationId,
        })),
      ),
    });
  }
  const handle = ctx.handleOf(plan.request.destinationAccountId);
  return create(whatsapp.OutgoingChatSchema, {
    ...common,
    to: formatUserJid(handle),
    noServerReceipt: plan.request.noDeliveryReceipt,
    participants: plan.request.messages.map((m) => ({
      jid: formatUserJid(handle, m.deviceId),
      registrationId: m.registrationId,
      kind: envelopeTypeToKind(m.type),
      ciphertext: m.content,
    })),
  });
}

/** A one-to-one send's outcome as a SendAck; device ids are rendered as JIDs of `recipient`. */
export function sendResponseToAck(
  id: string,
  response: SendMessageResponse,
  recipient: Handle,
): whatsapp.SendAck {
  const r = response.result;
  const jids = (devices: number[]) => devices.map((d) => formatUserJid(recipient, d));
  switch (r.case) {
    case "sent":
      // A literal (one per send), as in envelopeToChatFrame.
      return {
        $typeName: "switchboard.gateway.whatsapp.v1.SendAck",
        id,
        status: SendAckStatus.OK,
        serverId: r.value.messageId,
        serverT: r.value.serverTimestampMs,
        missing: [],
        extra: [],
        stale: [],
      };
    case "mismatchedDevices":
      return create(whatsapp.SendAckSchema, {
        id,
        status: SendAckStatus.DEVICES_CHANGED,
        missing: jids(r.value.missingDevices),
        extra: jids(r.value.extraDevices),
      });
    case "staleDevices":
      return create(whatsapp.SendAckSchema, {
        id,
        status: SendAckStatus.DEVICES_CHANGED,
        stale: jids(r.value.staleDevices),
      });
    case "recipientNotFound":
      return create(whatsapp.SendAckSchema, { id, status: SendAckStatus.NOT_FOUND });
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "send response without a result");
  }
}

/** The account ids a group send's outcome names (to resolve to handles before {@link groupSendResponseToAck}). */
export function accountIdsOf(response: SendGroupMessageResponse): string[] {
  const r = response.result;
  if (r.case !== "mismatchedDevices") return [];
  return [...new Set([...r.value.mismatched, ...r.value.stale].map((m) => m.accountId))];
}

/** A group send's outcome as a SendAck (NOT_FOUND for an unknown group or a non-member). */
export function groupSendResponseToAck(
  id: string,
  response: SendGroupMessageResponse,
  handleOf: (accountId: string) => Handle,
): whatsapp.SendAck {
  const r = response.result;
  switch (r.case) {
    case "sent":
      // A literal (one per send), as in envelopeToChatFrame.
      return {
        $typeName: "switchboard.gateway.whatsapp.v1.SendAck",
        id,
        status: SendAckStatus.OK,
        serverId: r.value.messageId,
        serverT: r.value.serverTimestampMs,
        missing: [],
        extra: [],
        stale: [],
      };
    case "mismatchedDevices": {
      const ack = create(whatsapp.SendAckSchema, { id, status: SendAckStatus.DEVICES_CHANGED });
      for (const m of r.value.mismatched) {
        const h = handleOf(m.accountId);
        ack.missing.push(...m.missingDevices.map((d) => formatUserJid(h, d)));
        ack.extra.push(...m.extraDevices.map((d) => formatUserJid(h, d)));
      }
      for (const s of r.value.stale) {
        const h = handleOf(s.accountId);
        ack.stale.push(...s.staleDevices.map((d) => formatUserJid(h, d)));
      }
      return ack;
    }
    case "notAMember":
      return create(whatsapp.SendAckSchema, { id, status: SendAckStatus.NOT_FOUND });
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "group send response without a result");
  }
}

/**
 * A failure as a ChatError frame. AppErrors keep their code, reason, message and retry hint
 * (`retry_after_ms`, e.g. RESOURCE_EXHAUSTED RATE_LIMITED from the delivery service's limits);
 * anything else becomes INTERNAL "internal error" (the caller logs it).
 */
export function chatErrorOf(id: string, err: unknown): whatsapp.ChatError {
  if (isAppError(err))
    return create(whatsapp.ChatErrorSchema, {
      id,
      code: err.code,
      reason: err.reason,
      message: err.message,
      retryAfterMs: BigInt(Math.max(0, Math.ceil(err.retryAfterMs ?? 0))),
    });
  return create(whatsapp.ChatErrorSchema, {
    id,
    code: Code.Internal,
    reason: "INTERNAL",
    message: "internal error",
  });
}
