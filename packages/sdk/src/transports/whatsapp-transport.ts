// The Transport over the WhatsApp-style gateway's native gRPC API (services/gateway-whatsapp,
// proto switchboard.gateway.whatsapp.v1): phone-number registration with a verification code,
// link codes for companion devices, JIDs, and one Chat stream per device carrying sends, acks,
// messages, server receipts and send results.
//
// The SDK core speaks in account ids; the native API in JIDs. The transport maps between them
// with what the gateway tells it (LookupUser, GetPreKeyBundles, group members, senders), so an
// account id must have been seen through this transport (by resolving its handle, as a group
// member or as a sender) before the client can address it.
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
// The package root does not re-export the multi-recipient message parser.
import SealedSenderMultiRecipientMessage from "@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js";
import { AppError, Code, isAppError } from "@switchboard/errors";
import {
  createClient as createGrpcClient,
  methodPath,
  type BidiOpener,
  type BidiStream,
  type ServiceClient,
} from "@switchboard/grpc";
import {
  AccountWithDevicesSchema,
  newAddress,
  newHandle,
  App,
  newEnvelope,
  EnvelopeType,
  MessageRequestSchema,
  RequestsPolicy,
  type MessageRequest,
  GetAccountResponseSchema,
  GetPreKeyBundlesResponseSchema,
  GetPreKeyCountResponseSchema,
  GroupSchema,
  RegisterAccountResponseSchema,
  RegisterDeviceResponseSchema,
  ReportMessageResponseSchema,
  ResolveHandleResponseSchema,
  UploadKeysResponseSchema,
  whatsapp,
  type AccountWithDevices,
  type AddGroupMembersRequest,
  type Address,
  type CreateGroupRequest,
  type Envelope,
  type GetAccountRequest,
  type GetAccountResponse,
  type GetGroupRequest,
  type GetPreKeyBundlesRequest,
  type GetPreKeyBundlesResponse,
  type GetPreKeyCountRequest,
  type GetPreKeyCountResponse,
  type Group,
  type Handle,
  type RegisterAccountRequest,
  type RegisterAccountResponse,
  type RegisterDeviceRequest,
  type RegisterDeviceResponse,
  type RemoveDeviceRequest,
  type RemoveGroupMembersRequest,
  type ReportMessageRequest,
  type ReportMessageResponse,
  type ResolveHandleRequest,
  type ResolveHandleResponse,
  type SendGroupMessageRequest,
  type SendMessageRequest,
  type SendMultiRecipientMessageRequest,
  type UploadKeysRequest,
  type UploadKeysResponse,
} from "@switchboard/proto";
import { AsyncQueue } from "../internal/async-queue.js";
import { decodeChatResponse, encodeChatRequest, whatsAppChatCodecs } from "./whatsapp-chat-codec.js";
import type {
  AppCredentials,
  DeviceCredentials,
  GroupDeviceMismatch,
  GroupSendOutcome,
  ReceiveEvent,
  ReceiveOptions,
  ReceiveSubscription,
  SendOutcome,
  RequestTarget,
  Transport,
} from "../transport.js";

const EMPTY_BYTES = new Uint8Array(0);

/** What VerifyCode / LinkDevice issued for this device. Persist it: the token is shown once. */
export interface WhatsAppSession {
  /** The device's bearer token. */
  token: string;
  /** The device JID, e.g. "15551234567:1@s.whatsapp.net". */
  jid: string;
  /** The service-wide account id. */
  accountId: string;
}

/** Options of createWhatsAppTransport. */
export interface WhatsAppTransportOptions {
  /** The gateway's gRPC address, `host:port`. */
  target: string;
  /** Channel credentials; default insecure (use TLS outside local development). */
  channelCredentials?: grpc.ChannelCredentials;
  /** grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** A session saved from an earlier registration or link. */
  session?: WhatsAppSession;
  /** Called when registration or linking issued a new session; store it with the client's store. */
  onSession?: (session: WhatsAppSession) => void | Promise<void>;
  /**
   * Supplies the verification code sent to a number during `registerAccount` (asked from the user;
   * tests read the gateway's dev admin endpoint).
   */
  verificationCode?: (phoneNumber: string) => Promise<string>;
  /** Deadline of unary calls and of waiting for a send's result, ms. Default 15,000. */
  callTimeoutMs?: number;
  /**
   * Opens the device's Chat stream on another HTTP/2 client than the grpc-js channel that carries
   * every other call (the load generator passes a lean one). It gets the stream's path, its
   * `authorization` metadata and the hand-written Chat codecs; `channelCredentials` and
   * `channelOptions` do not apply to it.
   */
  openChat?: BidiOpener;
}

// ---- JIDs (docs/addressing.md) ------------------------------------------------------------------

/** A user JID (device undefined) or device JID, parsed. */
export interface WhatsAppUserJid {
  handle: Handle;
  device?: number;
}

const SERVERS: Record<string, App> = {
  "s.whatsapp.net": App.WHATSAPP,
  messenger: App.MESSENGER,
  instagram: App.INSTAGRAM,
};

function badJid(jid: string): AppError {
  return new AppError(Code.InvalidArgument, "INVALID_JID", `invalid JID ${JSON.stringify(jid)}`);
}

/** Parses a user or device JID of any app; fails INVALID_ARGUMENT (INVALID_JID) for anything else. */
function parseUserJid(jid: string): WhatsAppUserJid {
  const at = jid.lastIndexOf("@");
  if (at <= 0) throw badJid(jid);
  const server = jid.slice(at + 1);
  let local = jid.slice(0, at);
  let device: number | undefined;
  const m = /^(.*):([1-9][0-9]*)$/.exec(local);
  if (m) {
    local = m[1] ?? "";
    device = Number(m[2]);
  }
  let handle: Handle;
  const app = SERVERS[server];
  if (app === App.WHATSAPP) handle = newHandle({ app, value: `+${local}` });
  else if (app !== undefined) handle = newHandle({ app, value: local });
  else if (server.endsWith(".provider"))
    handle = newHandle({ app: App.THIRD_PARTY, value: local, providerId: server.slice(0, -9) });
  else throw badJid(jid);
  if (local === "") throw badJid(jid);
  return device === undefined ? { handle } : { handle, device };
}

/** Renders a handle (and optionally a device) as a JID. */
function formatUserJid(handle: Handle, device?: number): string {
  const suffix = device === undefined ? "" : `:${device}`;
  switch (handle.app) {
    case App.WHATSAPP:
      return `${handle.value.replace(/^\+/, "")}${suffix}@s.whatsapp.net`;
    case App.MESSENGER:
      return `${handle.value}${suffix}@messenger`;
    case App.INSTAGRAM:
      return `${handle.value}${suffix}@instagram`;
    case App.THIRD_PARTY:
      return `${handle.value}${suffix}@${handle.providerId}.provider`;
    default:
      throw new AppError(Code.InvalidArgument, "INVALID_HANDLE", "this handle has no JID");
  }
}

const groupJidOf = (groupId: string) => `${groupId}@g.us`;

function groupIdOf(jid: string): string {
  if (!jid.endsWith("@g.us")) throw badJid(jid);
  return jid.slice(0, -"@g.us".length);
}

/** The user JID of a device JID. */
const userOf = (jid: string) => formatUserJid(parseUserJid(jid).handle);

// ---- translation (pure) -------------------------------------------------------------------------

const KINDS: [whatsapp.MessageKind, EnvelopeType][] = [
  [whatsapp.MessageKind.MSG, EnvelopeType.CIPHERTEXT],
  [whatsapp.MessageKind.PKMSG, EnvelopeType.PREKEY_MESSAGE],
  [whatsapp.MessageKind.SKMSG, EnvelopeType.SENDER_KEY_MESSAGE],
  [whatsapp.MessageKind.SEALED, EnvelopeType.SEALED_SENDER],
  [whatsapp.MessageKind.PLAINTEXT, EnvelopeType.PLAINTEXT_CONTENT],
];
const typeOfKind = (k: whatsapp.MessageKind) =>
  KINDS.find(([kind]) => kind === k)?.[1] ?? EnvelopeType.UNSPECIFIED;
const kindOfType = (t: EnvelopeType) =>
  KINDS.find(([, type]) => type === t)?.[0] ?? whatsapp.MessageKind.UNSPECIFIED;

/** Who a received frame was sent by (account id of its `from`) and to (this device). */
interface FrameContext {
  sourceAccountId: string;
  destination: Address;
}

function sourceOf(from: string, accountId: string) {
  if (from === "") return { app: App.UNSPECIFIED, providerId: "" };
  const jid = parseUserJid(from);
  return {
    source: newAddress({ accountId, deviceId: jid.device ?? 0 }),
    app: jid.handle.app,
    providerId: jid.handle.providerId,
  };
}

/** An IncomingChat as the Envelope the client core processes. */
function incomingChatToEnvelope(msg: whatsapp.IncomingChat, ctx: FrameContext): Envelope {
  const { source, app } = sourceOf(msg.from, ctx.sourceAccountId);
  return newEnvelope({
    id: msg.serverId,
    clientMessageId: msg.id,
    type: typeOfKind(msg.kind),
    source,
    sourceApp: app,
    sourceProviderId: msg.thirdPartyProvider,
    sourceRegistrationId: msg.senderRegistrationId,
    destination: ctx.destination,
    destinationApp: App.WHATSAPP,
    content: msg.ciphertext,
    serverTimestampMs: msg.serverT,
    clientTimestampMs: msg.t,
    ephemeral: msg.ephemeral,
    urgent: msg.urgent,
    groupId: msg.group === "" ? "" : groupIdOf(msg.group),
    forwarded: msg.forwarded,
    reportTag: msg.reportTag,
    sequence: msg.sequence,
    serverFrankingTag: msg.serverFrankingTag,
    messageRequest: msg.messageRequest,
  });
}

/** A ServerReceipt as a SERVER_DELIVERY_RECEIPT envelope. */
function serverReceiptToEnvelope(receipt: whatsapp.ServerReceipt, ctx: FrameContext): Envelope {
  const { source, app, providerId } = sourceOf(receipt.from, ctx.sourceAccountId);
  return newEnvelope({
    id: receipt.serverId,
    clientMessageId: receipt.id,
    type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
    source,
    sourceApp: app,
    sourceProviderId: providerId,
    destination: ctx.destination,
    destinationApp: App.WHATSAPP,
    serverTimestampMs: receipt.t,
  });
}

/**
 * A one-to-one send as an OutgoingChat; `handleOf` renders an account id as its user JID's handle.
 * `no_delivery_receipt` becomes `no_server_receipt`, so the gateway queues no ServerReceipt for it.
 */
function sendRequestToOutgoingChat(
  req: SendMessageRequest,
  handleOf: (accountId: string) => Handle,
): whatsapp.OutgoingChat {
  const handle = handleOf(req.destinationAccountId);
  // Object literals, not `create(...Schema, …)`, which walks the schema for every message sent (see
  // @switchboard/proto's envelope.ts); the types require every field.
  return {
    $typeName: "switchboard.gateway.whatsapp.v1.OutgoingChat",
    id: req.clientMessageId,
    to: formatUserJid(handle),
    participants: req.messages.map((m) => ({
      $typeName: "switchboard.gateway.whatsapp.v1.DeviceCiphertext",
      jid: formatUserJid(handle, m.deviceId),
      registrationId: m.registrationId,
      kind: kindOfType(m.type),
      ciphertext: m.content,
    })),
    groupCiphertext: EMPTY_BYTES,
    t: req.clientTimestampMs,
    ephemeral: req.ephemeral,
    forwarded: req.forwarded,
    reportTag: req.reportTag,
    urgent: req.urgent,
    noServerReceipt: req.noDeliveryReceipt,
  };
}

/** A group send as an OutgoingChat; expected recipients become participants without ciphertext. */
function groupSendRequestToOutgoingChat(
  req: SendGroupMessageRequest,
  handleOf: (accountId: string) => Handle,
): whatsapp.OutgoingChat {
  return create(whatsapp.OutgoingChatSchema, {
    id: req.clientMessageId,
    to: groupJidOf(req.groupId),
    groupCiphertext: req.content,
    participants: req.expectedRecipients.flatMap((r) =>
      r.devices.map((d) => ({
        jid: formatUserJid(handleOf(r.accountId), d.deviceId),
        registrationId: d.registrationId,
      })),
    ),
    t: req.clientTimestampMs,
    ephemeral: req.ephemeral,
    forwarded: req.forwarded,
    reportTag: req.reportTag,
    urgent: req.urgent,
  });
}

const deviceOf = (jid: string) => parseUserJid(jid).device ?? 0;

/** A SendAck of a one-to-one send to `accountId` as a SendOutcome. */
function sendAckToOutcome(ack: whatsapp.SendAck, accountId: string): SendOutcome {
  switch (ack.status) {
    case whatsapp.SendAckStatus.OK:
      return {
        kind: "sent",
        messageId: ack.serverId,
        serverTimestampMs: Number(ack.serverT),
        duplicate: false,
      };
    case whatsapp.SendAckStatus.NOT_FOUND:
      return { kind: "not_found" };
    case whatsapp.SendAckStatus.DEVICES_CHANGED:
      if (ack.stale.length > 0) return { kind: "stale", accountId, staleDevices: ack.stale.map(deviceOf) };
      return {
        kind: "mismatched",
        accountId,
        missingDevices: ack.missing.map(deviceOf),
        extraDevices: ack.extra.map(deviceOf),
      };
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "SendAck without a status");
  }
}

/** A SendAck of a group send as a GroupSendOutcome; `accountIdOf` maps user JIDs to account ids. */
function groupSendAckToOutcome(
  ack: whatsapp.SendAck,
  accountIdOf: (userJid: string) => string,
): GroupSendOutcome {
  switch (ack.status) {
    case whatsapp.SendAckStatus.OK:
      return {
        kind: "sent",
        messageId: ack.serverId,
        serverTimestampMs: Number(ack.serverT),
        duplicate: false,
      };
    case whatsapp.SendAckStatus.NOT_FOUND:
      return { kind: "not_a_member" };
    case whatsapp.SendAckStatus.DEVICES_CHANGED: {
      const byAccount = new Map<string, GroupDeviceMismatch>();
      const entry = (jid: string) => {
        const accountId = accountIdOf(userOf(jid));
        let e = byAccount.get(accountId);
        if (!e)
          byAccount.set(
            accountId,
            (e = { accountId, missingDevices: [], extraDevices: [], staleDevices: [] }),
          );
        return e;
      };
      for (const j of ack.missing) entry(j).missingDevices.push(deviceOf(j));
      for (const j of ack.extra) entry(j).extraDevices.push(deviceOf(j));
      for (const j of ack.stale) entry(j).staleDevices.push(deviceOf(j));
      return { kind: "mismatched", accounts: [...byAccount.values()] };
    }
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "SendAck without a status");
  }
}

/**
 * The transport's pure translations between the native API and the delivery API's messages,
 * exported for tests and for clients that speak the native API directly.
 */
export const whatsAppTranslation = Object.freeze({
  parseUserJid,
  formatUserJid,
  incomingChatToEnvelope,
  serverReceiptToEnvelope,
  sendRequestToOutgoingChat,
  groupSendRequestToOutgoingChat,
  sendAckToOutcome,
  groupSendAckToOutcome,
});

// ---- the Chat stream ----------------------------------------------------------------------------

type ChatStream = BidiStream<typeof whatsapp.ChatRequestSchema, typeof whatsapp.ChatResponseSchema>;

const CHAT_PATH = methodPath(whatsapp.WhatsAppService.method.chat);

/** One Chat stream: sends matched to SendAcks by id, received frames queued in order. */
class ChatConnection {
  private readonly pending = new Map<
    string,
    { resolve: (a: whatsapp.SendAck) => void; reject: (e: unknown) => void }[]
  >();
  /** Events received while no subscription is attached. */
  private readonly buffered: ReceiveEvent[] = [];
  private subscription: AsyncQueue<ReceiveEvent> | undefined;
  /** True once a subscription was attached: a later one needs a fresh stream (redelivery). */
  subscribed = false;
  closed = false;
  private incoming: Promise<void> = Promise.resolve();

  constructor(
    readonly stream: ChatStream,
    private readonly toEnvelope: (frame: whatsapp.ChatResponse["frame"]) => Promise<Envelope>,
  ) {
    void this.read();
  }

  private async read(): Promise<void> {
    try {
      for await (const f of this.stream.responses) this.onFrame(f);
      this.fail(new AppError(Code.Unavailable, "STREAM_CLOSED", "the chat stream ended"));
    } catch (err) {
      this.fail(err);
    }
  }

  private onFrame(response: whatsapp.ChatResponse): void {
    const frame = response.frame;
    switch (frame.case) {
      case "message":
      case "receipt":
        // Translation may look a sender up; the chain keeps delivery order.
        this.incoming = this.incoming.then(async () => {
          if (this.closed) return;
          try {
            this.push({ kind: "envelope", envelope: await this.toEnvelope(frame) });
          } catch (err) {
            // Unacknowledged, so the next stream redelivers it: end this one.
            this.fail(err);
            this.stream.cancel();
          }
        });
        return;
      case "queueDrained":
        this.incoming = this.incoming.then(() => this.push({ kind: "queue_empty" }));
        return;
      case "sendAck":
        this.settle(frame.value.id, (w) => w.resolve(frame.value));
        return;
      case "error": {
        const e = frame.value;
        const known = Object.values(Code).includes(e.code);
        const err = new AppError(
          known ? e.code : Code.Unknown,
          e.reason || "UNKNOWN",
          e.message || "chat frame failed",
          e.retryAfterMs > 0n ? { retryAfterMs: Number(e.retryAfterMs) } : {},
        );
        if (e.id !== "") this.settle(e.id, (w) => w.reject(err));
        return;
      }
      default:
        return;
    }
  }

  private settle(
    id: string,
    fn: (w: { resolve: (a: whatsapp.SendAck) => void; reject: (e: unknown) => void }) => void,
  ) {
    const waiters = this.pending.get(id);
    const w = waiters?.shift();
    if (waiters?.length === 0) this.pending.delete(id);
    if (w) fn(w);
  }

  private push(event: ReceiveEvent): void {
    if (this.subscription && !this.subscription.closed) this.subscription.push(event);
    else this.buffered.push(event);
  }

  attach(queue: AsyncQueue<ReceiveEvent>): void {
    this.subscription?.end(true);
    this.subscription = queue;
    this.subscribed = true;
    for (const e of this.buffered.splice(0)) queue.push(e);
  }

  detach(queue: AsyncQueue<ReceiveEvent>): void {
    if (this.subscription === queue) this.subscription = undefined;
  }

  /** Sends an OutgoingChat and waits for its SendAck (or ChatError). */
  async call(msg: whatsapp.OutgoingChat, timeoutMs: number): Promise<whatsapp.SendAck> {
    if (this.closed) throw new AppError(Code.Unavailable, "STREAM_CLOSED", "the chat stream ended");
    let timer: NodeJS.Timeout | undefined;
    let waiter!: { resolve: (a: whatsapp.SendAck) => void; reject: (e: unknown) => void };
    const result = new Promise<whatsapp.SendAck>((resolve, reject) => {
      waiter = { resolve, reject };
      const list = this.pending.get(msg.id) ?? [];
      list.push(waiter);
      this.pending.set(msg.id, list);
      timer = setTimeout(() => {
        this.settle(msg.id, (w) =>
          w.reject(
            new AppError(Code.DeadlineExceeded, "SEND_TIMEOUT", `no send result within ${timeoutMs} ms`),
          ),
        );
      }, timeoutMs);
    });
    try {
      await this.stream.send({ frame: { case: "send", value: msg } });
      return await result;
    } finally {
      clearTimeout(timer);
      result.catch(() => {});
    }
  }

  async ack(ids: string[]): Promise<void> {
    await this.stream.send({ frame: { case: "ack", value: { ids } } });
  }

  /** Fails everything waiting on this stream; later calls open a new one. */
  fail(err: unknown): void {
    if (this.closed) return;
    this.closed = true;
    for (const list of this.pending.values()) for (const w of list) w.reject(err);
    this.pending.clear();
    this.buffered.length = 0;
    this.subscription?.fail(err);
    this.subscription = undefined;
  }
}

const MAX_ACK_IDS = 1000;

/**
 * Creates a Transport over the WhatsApp-style gateway. Registration (`registerAccount`) runs
 * RequestCode and VerifyCode, taking the code from `verificationCode`; a companion device links
 * with `registerDevice` passing a link code (from the primary's {@link WhatsAppTransport.createLinkCode})
 * as `appToken`. One Chat stream (opened on first use) carries sends, acks and received frames.
 */
export function createWhatsAppTransport(options: WhatsAppTransportOptions): WhatsAppTransport {
  return new WhatsAppTransport(options);
}

/** The WhatsApp-style gateway's Transport; see createWhatsAppTransport. */
export class WhatsAppTransport implements Transport {
  private readonly channel: grpc.Client;
  private readonly api: ServiceClient<typeof whatsapp.WhatsAppService>;
  private readonly timeoutMs: number;
  private session: WhatsAppSession | undefined;
  private device: { accountId: string; deviceId: number } | undefined;
  private connectionState: ChatConnection | undefined;
  private readonly accountByJid = new Map<string, string>();
  private readonly handleByAccount = new Map<string, Handle>();
  /** Sealed sender: a separate connection that never carries this device's token. */
  private anonymous:
    { channel: grpc.Client; api: ServiceClient<typeof whatsapp.WhatsAppService> } | undefined;
  private trustRoot: Uint8Array | undefined;

  constructor(private readonly options: WhatsAppTransportOptions) {
    this.channel = new grpc.Client(
      options.target,
      options.channelCredentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
    this.timeoutMs = options.callTimeoutMs ?? 15_000;
    this.api = createGrpcClient(whatsapp.WhatsAppService, this.channel, {
      metadata: (): Record<string, string> =>
        this.session === undefined ? {} : { authorization: `Bearer ${this.session.token}` },
      defaultDeadlineMs: this.timeoutMs,
      codecs: whatsAppChatCodecs,
    });
    if (options.session) this.adopt(options.session);
  }

  /** The current session (token, device JID, account id), if registered. */
  get currentSession(): WhatsAppSession | undefined {
    return this.session;
  }

  private adopt(session: WhatsAppSession): void {
    this.session = session;
    const jid = parseUserJid(session.jid);
    this.remember(session.accountId, jid.handle);
    this.device = { accountId: session.accountId, deviceId: jid.device ?? 1 };
  }

  private async issue(session: WhatsAppSession): Promise<void> {
    this.resetConnection(
      new AppError(Code.Unauthenticated, "CREDENTIALS_CHANGED", "device credentials changed"),
    );
    this.adopt(session);
    await this.options.onSession?.(session);
  }

  private remember(accountId: string, handle: Handle): void {
    if (accountId === "") return;
    this.accountByJid.set(formatUserJid(handle), accountId);
    this.handleByAccount.set(accountId, handle);
  }

  private rememberLookup(handle: Handle, r: whatsapp.LookupUserResponse): AccountWithDevices | undefined {
    if (!r.exists) return undefined;
    this.remember(r.accountId, handle);
    return create(AccountWithDevicesSchema, {
      account: { id: r.accountId, handle },
      devices: r.devices.map((d) => ({ deviceId: deviceOf(d.jid), registrationId: d.registrationId })),
    });
  }

  /** The handle of an account seen through this transport; NOT_FOUND (UNKNOWN_ACCOUNT) otherwise. */
  private handleOf(accountId: string): Handle {
    const h = this.handleByAccount.get(accountId);
    if (!h)
      throw new AppError(
        Code.NotFound,
        "UNKNOWN_ACCOUNT",
        `account ${accountId} has not been seen through this transport; resolve its handle first`,
      );
    return h;
  }

  /** The account id of a user JID, looked up when not yet known ("" when no such user). */
  private async accountIdOf(userJid: string): Promise<string> {
    const known = this.accountByJid.get(userJid);
    if (known !== undefined) return known;
    const handle = parseUserJid(userJid).handle;
    const r = await this.api.lookupUser({ jid: userJid });
    return this.rememberLookup(handle, r)?.account?.id ?? "";
  }

  /** Creates a one-time code with which a companion device links to this (primary) device's account. */
  async createLinkCode(): Promise<{ code: string; expiresInSeconds: number }> {
    const r = await this.api.createLinkCode({});
    return { code: r.code, expiresInSeconds: r.expiresInSeconds };
  }

  setDeviceCredentials(credentials: DeviceCredentials): void {
    // The password is the SDK's own device secret; this gateway authenticates devices by the
    // token it issued instead (see WhatsAppSession).
    const same =
      this.device?.accountId === credentials.accountId && this.device.deviceId === credentials.deviceId;
    if (!same)
      this.resetConnection(
        new AppError(Code.Unauthenticated, "CREDENTIALS_CHANGED", "device credentials changed"),
      );
    this.device = { accountId: credentials.accountId, deviceId: credentials.deviceId };
  }

  async registerAccount(
    request: RegisterAccountRequest,
    _auth: AppCredentials,
  ): Promise<RegisterAccountResponse> {
    const handle = request.handle;
    if (handle?.app !== App.WHATSAPP)
      throw new AppError(
        Code.InvalidArgument,
        "WHATSAPP_HANDLE_REQUIRED",
        "register a phone number (APP_WHATSAPP)",
      );
    const supply = this.options.verificationCode;
    if (!supply)
      throw new AppError(
        Code.FailedPrecondition,
        "NO_CODE_SOURCE",
        "pass verificationCode to createWhatsAppTransport",
      );
    await this.api.requestCode({ phoneNumber: handle.value });
    const code = await supply(handle.value);
    const r = await this.api.verifyCode({
      phoneNumber: handle.value,
      code,
      registrationId: request.registrationId,
      deviceName: request.deviceName,
      minor: request.minor,
    });
    await this.issue({ token: r.token, jid: r.jid, accountId: r.accountId });
    return create(RegisterAccountResponseSchema, {
      account: { id: r.accountId, handle },
      device: { deviceId: deviceOf(r.jid), registrationId: request.registrationId, name: request.deviceName },
    });
  }

  /**
   * Links this device as a companion: `auth.appToken` carries the link code the primary device
   * created (createLinkCode). Without it fails UNIMPLEMENTED (LINK_CODE_REQUIRED): the native API
   * has no way for the primary to register a device on the companion's behalf.
   */
  async registerDevice(
    request: RegisterDeviceRequest,
    auth?: AppCredentials,
  ): Promise<RegisterDeviceResponse> {
    if (auth === undefined)
      throw new AppError(
        Code.Unimplemented,
        "LINK_CODE_REQUIRED",
        "link with a code: createLinkCode on the primary, then registerDevice({ appToken: code }) on the new device",
      );
    const r = await this.api.linkDevice({
      code: auth.appToken,
      registrationId: request.registrationId,
      deviceName: request.deviceName,
    });
    if (request.accountId !== "" && r.accountId !== request.accountId)
      throw new AppError(
        Code.PermissionDenied,
        "ACCOUNT_MISMATCH",
        "the link code belongs to another account",
      );
    await this.issue({ token: r.token, jid: r.jid, accountId: r.accountId });
    return create(RegisterDeviceResponseSchema, {
      device: { deviceId: deviceOf(r.jid), registrationId: request.registrationId, name: request.deviceName },
    });
  }

  async removeDevice(_request: RemoveDeviceRequest): Promise<void> {
    throw new AppError(Code.Unimplemented, "UNIMPLEMENTED", "the WhatsApp-style API cannot remove devices");
  }

  async uploadKeys(request: UploadKeysRequest): Promise<UploadKeysResponse> {
    const signed = (k: { keyId: number; publicKey: Uint8Array; signature: Uint8Array } | undefined) =>
      k && { keyId: k.keyId, publicKey: k.publicKey, signature: k.signature };
    const r = await this.api.uploadKeys({
      identityKey: request.identityKey,
      signedPreKey: signed(request.signedPreKey),
      oneTimePreKeys: request.oneTimePreKeys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey })),
      kyberPreKeys: request.kyberPreKeys.map((k) => ({
        keyId: k.keyId,
        publicKey: k.publicKey,
        signature: k.signature,
      })),
      lastResortKyberPreKey: signed(request.lastResortKyberPreKey),
    });
    return create(UploadKeysResponseSchema, {
      oneTimePreKeyCount: r.oneTimePreKeyCount,
      kyberPreKeyCount: r.kyberPreKeyCount,
    });
  }

  async getPreKeyBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse> {
    const handle = this.handleOf(request.accountId);
    let r: whatsapp.GetPreKeyBundlesResponse;
    try {
      r = await this.api.getPreKeyBundles({
        jid: formatUserJid(handle, request.deviceId === 0 ? undefined : request.deviceId),
      });
    } catch (err) {
      if (isAppError(err) && err.code === Code.NotFound)
        return create(GetPreKeyBundlesResponseSchema, { result: { case: "notFound", value: {} } });
      throw err;
    }
    const signed = (k: whatsapp.PreKey | undefined) =>
      k && { keyId: k.keyId, publicKey: k.publicKey, signature: k.signature };
    return create(GetPreKeyBundlesResponseSchema, {
      result: {
        case: "bundles",
        value: {
          app: handle.app,
          bundles: r.bundles.map((b) => ({
            deviceId: deviceOf(b.jid),
            registrationId: b.registrationId,
            identityKey: b.identityKey,
            signedPreKey: signed(b.signedPreKey),
            oneTimePreKey: b.oneTimePreKey && {
              keyId: b.oneTimePreKey.keyId,
              publicKey: b.oneTimePreKey.publicKey,
            },
            kyberPreKey: signed(b.kyberPreKey),
          })),
        },
      },
    });
  }

  /** Counts remaining one-time keys with an empty UploadKeys (the native API has no count call). */
  async setThirdPartyReachable(reachable: boolean): Promise<boolean> {
    return (await this.api.setThirdPartyReachable({ reachable })).reachable;
  }

  async listMessageRequests(): Promise<MessageRequest[]> {
    const device = this.device;
    if (device === undefined)
      throw new AppError(Code.Unauthenticated, "NO_CREDENTIALS", "register or link this device first");
    const destination = newAddress(device);
    const r = await this.api.listMessageRequests({});
    const out: MessageRequest[] = [];
    for (const q of r.requests) {
      const peerAccountId = q.from === "" ? "" : await this.accountIdOf(q.from);
      out.push(
        create(MessageRequestSchema, {
          peerAccountId,
          peerHandle: q.from === "" ? undefined : parseUserJid(q.from).handle,
          groupId: q.group === "" ? "" : groupIdOf(q.group),
          envelopes: q.messages.map((m) =>
            incomingChatToEnvelope(m, { sourceAccountId: peerAccountId, destination }),
          ),
          messageCount: q.messageCount,
          firstReceivedAtMs: q.t,
        }),
      );
    }
    return out;
  }

  /** The JID a request call names: the peer's user JID (a peer seen before) or the group JID. */
  private requestJid(target: RequestTarget): string {
    return "groupId" in target
      ? groupJidOf(target.groupId)
      : formatUserJid(this.handleOf(target.peerAccountId));
  }

  async acceptMessageRequest(target: RequestTarget): Promise<number> {
    return (await this.api.acceptMessageRequest({ jid: this.requestJid(target) })).released;
  }

  async declineMessageRequest(target: RequestTarget): Promise<number> {
    return (await this.api.declineMessageRequest({ jid: this.requestJid(target) })).deleted;
  }

  async block(peerAccountId: string): Promise<void> {
    await this.api.blockUser({ jid: this.requestJid({ peerAccountId }) });
  }

  async unblock(peerAccountId: string): Promise<void> {
    await this.api.unblockUser({ jid: this.requestJid({ peerAccountId }) });
  }

  async setRequestsPolicy(policy: RequestsPolicy): Promise<void> {
    await this.api.setRequestsPolicy({ hold: policy === RequestsPolicy.HOLD });
  }

  async getThirdPartyReachable(): Promise<boolean> {
    return (await this.api.getThirdPartyReachable({})).reachable;
  }

  async getPreKeyCount(_request: GetPreKeyCountRequest): Promise<GetPreKeyCountResponse> {
    const r = await this.api.uploadKeys({});
    return create(GetPreKeyCountResponseSchema, {
      oneTimePreKeyCount: r.oneTimePreKeyCount,
      kyberPreKeyCount: r.kyberPreKeyCount,
    });
  }

  async resolveHandle(request: ResolveHandleRequest): Promise<ResolveHandleResponse> {
    const handle = request.handle;
    if (!handle) throw new AppError(Code.InvalidArgument, "HANDLE_REQUIRED", "handle is required");
    const found = this.rememberLookup(handle, await this.api.lookupUser({ jid: formatUserJid(handle) }));
    return create(ResolveHandleResponseSchema, {
      result: found ? { case: "found", value: found } : { case: "notFound", value: {} },
    });
  }

  async getAccount(request: GetAccountRequest): Promise<GetAccountResponse> {
    const handle = this.handleOf(request.accountId);
    const found = this.rememberLookup(handle, await this.api.lookupUser({ jid: formatUserJid(handle) }));
    return create(GetAccountResponseSchema, {
      result: found ? { case: "found", value: found } : { case: "notFound", value: {} },
    });
  }

  async sendMessage(request: SendMessageRequest): Promise<SendOutcome> {
    const msg = sendRequestToOutgoingChat(request, (id) => this.handleOf(id));
    const ack = await this.connection().call(msg, this.timeoutMs);
    return sendAckToOutcome(ack, request.destinationAccountId);
  }

  /** SendSealed over its own connection, with the recipient's access key and no token. */
  async sendSealedMessage(request: SendMessageRequest, accessKey: Uint8Array): Promise<SendOutcome> {
    const msg = sendRequestToOutgoingChat(request, (id) => this.handleOf(id));
    const r = await this.anonymousApi().sendSealed({ message: msg, accessKey });
    if (!r.ack) throw new AppError(Code.Internal, "INVALID_RESPONSE", "SendSealed without an ack");
    return sendAckToOutcome(r.ack, request.destinationAccountId);
  }

  /**
   * SendSealedMultiRecipient over the same token-free connection as {@link sendSealedMessage}, with
   * the recipients' combined access key. The recipient JIDs are those of the accounts the
   * messages name (each must have been seen through this transport: NOT_FOUND UNKNOWN_ACCOUNT
   * otherwise); INVALID_ARGUMENT (INVALID_MULTI_RECIPIENT_MESSAGE) for a message libsignal
   * cannot parse.
   */
  async sendSealedMultiRecipientMessage(
    request: SendMultiRecipientMessageRequest,
    combinedAccessKey: Uint8Array,
  ): Promise<GroupSendOutcome> {
    const accountIds = new Set<string>();
    for (const [i, blob] of request.messages.entries()) {
      let listed: Record<string, unknown>;
      try {
        const copy = new Uint8Array(blob.byteLength);
        copy.set(blob);
        listed = new SealedSenderMultiRecipientMessage(copy).recipientsByServiceIdString();
      } catch (cause) {
        throw new AppError(
          Code.InvalidArgument,
          "INVALID_MULTI_RECIPIENT_MESSAGE",
          `messages[${i}] is not a libsignal sealed-sender multi-recipient message`,
          { cause },
        );
      }
      for (const serviceId of Object.keys(listed)) accountIds.add(serviceId);
    }
    const accountByJid = new Map<string, string>();
    for (const id of accountIds) accountByJid.set(formatUserJid(this.handleOf(id)), id);
    const r = await this.anonymousApi().sendSealedMultiRecipient({
      id: request.clientMessageId,
      recipients: [...accountByJid.keys()],
      messages: request.messages,
      accessKey: combinedAccessKey,
      t: request.clientTimestampMs,
      ephemeral: request.ephemeral,
      urgent: request.urgent,
      forwarded: request.forwarded,
    });
    if (!r.ack)
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "SendSealedMultiRecipient without an ack");
    return groupSendAckToOutcome(r.ack, (jid) => accountByJid.get(jid) ?? "");
  }

  /** The WhatsAppService client of a separate connection that never carries this device's token. */
  private anonymousApi(): ServiceClient<typeof whatsapp.WhatsAppService> {
    if (this.anonymous === undefined) {
      const channel = new grpc.Client(
        this.options.target,
        this.options.channelCredentials ?? grpc.credentials.createInsecure(),
        { ...this.options.channelOptions, "grpc.use_local_subchannel_pool": 1 },
      );
      this.anonymous = {
        channel,
        api: createGrpcClient(whatsapp.WhatsAppService, channel, {
          defaultDeadlineMs: this.timeoutMs,
          codecs: whatsAppChatCodecs,
        }),
      };
    }
    return this.anonymous.api;
  }

  async getSenderCertificate(): Promise<{ certificate: Uint8Array; expiresAtMs: number }> {
    const r = await this.api.getSenderCertificate({});
    this.trustRoot = r.trustRoot;
    return { certificate: r.certificate, expiresAtMs: Number(r.expiresAtMs) };
  }

  async getSealedSenderTrustRoot(): Promise<Uint8Array> {
    if (this.trustRoot === undefined) await this.getSenderCertificate();
    return this.trustRoot ?? new Uint8Array(0);
  }

  async setUnidentifiedAccess(
    access: { accessKey?: Uint8Array; unrestricted?: boolean } | undefined,
  ): Promise<void> {
    await this.api.setUnidentifiedAccess(
      access === undefined
        ? { disable: true }
        : { accessKey: access.accessKey ?? new Uint8Array(0), unrestricted: access.unrestricted ?? false },
    );
  }

  async reportMessage(request: ReportMessageRequest): Promise<ReportMessageResponse> {
    const sender = request.sender;
    const r = await this.api.reportMessage({
      serverId: request.messageId,
      from:
        sender && sender.accountId !== ""
          ? formatUserJid(this.handleOf(sender.accountId), sender.deviceId)
          : "",
      serverT: request.serverTimestampMs,
      plaintext: request.plaintext,
      frankingKey: request.frankingKey,
      reportTag: request.reportTag,
      serverFrankingTag: request.serverFrankingTag,
      senderCertificate: request.senderCertificate,
      reason: request.reason,
    });
    return create(ReportMessageResponseSchema, { reportId: r.reportId, sender });
  }

  async sendGroupMessage(request: SendGroupMessageRequest): Promise<GroupSendOutcome> {
    const msg = groupSendRequestToOutgoingChat(request, (id) => this.handleOf(id));
    const ack = await this.connection().call(msg, this.timeoutMs);
    for (const jid of [...ack.missing, ...ack.extra, ...ack.stale]) await this.accountIdOf(userOf(jid));
    return groupSendAckToOutcome(ack, (jid) => this.accountByJid.get(jid) ?? "");
  }

  async createGroup(request: CreateGroupRequest): Promise<Group> {
    const participants = request.memberAccountIds.map((id) => formatUserJid(this.handleOf(id)));
    const { groupJid } = await this.api.createGroup({ participants });
    return this.groupOf(groupJid, (await this.api.updateGroup({ groupJid })).participants);
  }

  async addGroupMembers(request: AddGroupMembersRequest): Promise<Group> {
    const groupJid = groupJidOf(request.groupId);
    const add = request.accountIds.map((id) => formatUserJid(this.handleOf(id)));
    return this.groupOf(groupJid, (await this.api.updateGroup({ groupJid, add })).participants);
  }

  async removeGroupMembers(request: RemoveGroupMembersRequest): Promise<Group> {
    const groupJid = groupJidOf(request.groupId);
    const remove = request.accountIds.map((id) => formatUserJid(this.handleOf(id)));
    return this.groupOf(groupJid, (await this.api.updateGroup({ groupJid, remove })).participants);
  }

  /** Reads a group's members (UpdateGroup without changes) and their devices. */
  async getGroup(request: GetGroupRequest): Promise<Group> {
    const groupJid = groupJidOf(request.groupId);
    return this.groupOf(groupJid, (await this.api.updateGroup({ groupJid })).participants);
  }

  /**
   * A Group from member JIDs, with each member's devices looked up. The native API carries neither
   * the creator nor the revision: both are left empty (the client core uses neither for delivery).
   */
  private async groupOf(groupJid: string, participants: string[]): Promise<Group> {
    const members: AccountWithDevices[] = [];
    for (const jid of participants) {
      const handle = parseUserJid(jid).handle;
      const found = this.rememberLookup(handle, await this.api.lookupUser({ jid }));
      if (found) members.push(found);
    }
    members.sort((a, b) => ((a.account?.id ?? "") < (b.account?.id ?? "") ? -1 : 1));
    return create(GroupSchema, { id: groupIdOf(groupJid), members });
  }

  /**
   * Subscribes to this device's messages. The Chat stream itself is the subscription: a stream
   * opened earlier for sends is reused (what it buffered is handed over); after an earlier
   * subscription a fresh stream is opened, so every unacknowledged message is delivered again.
   * The window is the gateway's (`options.window` is ignored).
   */
  receive(_options: ReceiveOptions = {}): ReceiveSubscription {
    let conn = this.connection();
    if (conn.subscribed) {
      this.resetConnection(
        new AppError(Code.Unavailable, "CHAT_STREAM_REPLACED", "the chat stream was replaced; retry"),
      );
      conn = this.connection();
    }
    const queue = new AsyncQueue<ReceiveEvent>();
    conn.attach(queue);
    return {
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
      close: () => {
        queue.end(true);
        conn.detach(queue);
      },
    };
  }

  async ack(messageIds: string[]): Promise<void> {
    for (let i = 0; i < messageIds.length; i += MAX_ACK_IDS)
      await this.connection().ack(messageIds.slice(i, i + MAX_ACK_IDS));
  }

  async close(): Promise<void> {
    this.resetConnection(new AppError(Code.Canceled, "TRANSPORT_CLOSED", "the transport was closed"));
    this.channel.close();
    this.anonymous?.channel.close();
  }

  private connection(): ChatConnection {
    if (this.connectionState === undefined || this.connectionState.closed) {
      const device = this.device;
      if (this.session === undefined || device === undefined)
        throw new AppError(Code.Unauthenticated, "NO_CREDENTIALS", "register or link this device first");
      const destination = newAddress(device);
      const stream = this.options.openChat
        ? this.options.openChat({
            path: CHAT_PATH,
            metadata: { authorization: `Bearer ${this.session.token}` },
            encode: encodeChatRequest,
            decode: decodeChatResponse,
          })
        : this.api.chat();
      this.connectionState = new ChatConnection(stream, async (frame) => {
        const from = frame.case === "message" || frame.case === "receipt" ? frame.value.from : "";
        const sourceAccountId = from === "" ? "" : await this.accountIdOf(userOf(from));
        const ctx = { sourceAccountId, destination };
        if (frame.case === "receipt") return serverReceiptToEnvelope(frame.value, ctx);
        if (frame.case === "message") return incomingChatToEnvelope(frame.value, ctx);
        throw new AppError(Code.Internal, "INVALID_FRAME", "not a message frame");
      });
    }
    return this.connectionState;
  }

  private resetConnection(reason: AppError): void {
    const conn = this.connectionState;
    this.connectionState = undefined;
    if (!conn) return;
    conn.fail(reason);
    conn.stream.cancel();
  }
}
