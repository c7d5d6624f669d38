// The Transport over the Messenger-style gateway's native API (services/gateway-messenger):
// numeric user ids, bearer access tokens, the Send API over HTTP/JSON and live delivery over a
// WebSocket. Node 20's global fetch for HTTP, the `ws` package for the socket.
import { create } from "@bufbuild/protobuf";
import { AppError, Code, codeName } from "@switchboard/errors";
import {
  App,
  newEnvelope,
  EnvelopeType,
  RequestsPolicy,
  GetAccountResponseSchema,
  GetPreKeyBundlesResponseSchema,
  GetGroupRequestSchema,
  GetPreKeyCountResponseSchema,
  GroupSchema,
  MessageRequestSchema,
  RegisterAccountResponseSchema,
  RegisterDeviceResponseSchema,
  ReportMessageResponseSchema,
  ResolveHandleResponseSchema,
  UploadKeysResponseSchema,
  type AccountWithDevicesSchema,
  type AddGroupMembersRequest,
  type CreateGroupRequest,
  type DeviceSchema,
  type Envelope,
  type GetAccountRequest,
  type GetAccountResponse,
  type GetGroupRequest,
  type GetPreKeyBundlesRequest,
  type GetPreKeyBundlesResponse,
  type GetPreKeyCountRequest,
  type GetPreKeyCountResponse,
  type Group,
  type HandleSchema,
  type MessageRequest,
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
  type SignedPreKey,
  type UploadKeysRequest,
  type UploadKeysResponse,
} from "@switchboard/proto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { AsyncQueue } from "../internal/async-queue.js";
import { withTimeout } from "../internal/timeout.js";
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

/** Options of createMessengerTransport. */
export interface MessengerTransportOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8081`. */
  baseUrl: string;
  /** The access token of the device this transport acts as, if the application kept one. */
  accessToken?: string;
  /** Called whenever this transport's own device is issued a token: persist it for restarts. */
  onAccessToken?: (token: string, device: { accountId: string; deviceId: number }) => void;
  /** Deadline of each HTTP call (the request and reading its answer), ms; a call past it fails DEADLINE_EXCEEDED `GATEWAY_TIMEOUT`. Default 15,000. */
  callTimeoutMs?: number;
  /**
   * The fetch to call the gateway with (default: the global `fetch`, looked up at each call). Pass one
   * bound to your own HTTP client or connection pool, e.g. an undici `Agent` with keep-alive; it must
   * return a `Response` whose body streams (the event stream reads it incrementally).
   */
  fetch?: typeof fetch;
  /**
   * While this device's WebSocket is open (`receive`), send messages as `send` / `send_group` frames
   * on it instead of POST requests: no HTTP request per message, and a device's messages keep their
   * order without waiting for each other's results. Default true; false always POSTs.
   */
  sendOverSocket?: boolean;
}

// ---- JSON shapes of the gateway (its /openapi.json is the reference) ---------------------------

/** A user in the gateway's idiom. */
export interface MessengerUser {
  account_id: string;
  app: string;
  id?: string;
  phone?: string;
  username?: string;
  handle?: string;
}

interface JsonDevice {
  device_id: number;
  registration_id: number;
  name: string;
  created_at: number;
}

interface JsonProfile {
  user: MessengerUser;
  devices: JsonDevice[];
}

interface JsonGroup {
  id: string;
  creator: MessengerUser;
  revision: number;
  members: JsonProfile[];
}

interface JsonSignedPreKey {
  key_id: number;
  public_key: string;
  signature: string;
}

interface JsonBundle {
  device_id: number;
  registration_id: number;
  identity_key: string;
  signed_pre_key?: JsonSignedPreKey;
  one_time_pre_key?: { key_id: number; public_key: string };
  kyber_pre_key?: JsonSignedPreKey;
  kyber_pre_key_is_last_resort: boolean;
}

/** A `message` or `delivery` event of the gateway's WebSocket. */
export interface MessengerEnvelopeEvent {
  type: "message" | "delivery";
  server_id: string;
  seq: number;
  server_timestamp: number;
  sender?: MessengerUser;
  sender_device?: number;
  sender_registration_id?: number;
  group_id?: string;
  ephemeral?: boolean;
  urgent?: boolean;
  forwarded?: boolean;
  report_tag?: string;
  server_franking_tag?: string;
  message_request?: boolean;
  mid?: string;
  kind?: string;
  body?: string;
  timestamp?: number;
  delivery?: { mids: string[]; watermark: number };
}

/** One entry of `GET /v1/me/requests`. */
interface JsonRequest {
  sender: MessengerUser;
  group_id?: string;
  message_count: number;
  first_received_at: number;
  messages: MessengerEnvelopeEvent[];
}

interface Problem {
  status?: number;
  reason?: string;
  code?: string;
  detail?: string;
  account_id?: string;
  missing?: number[];
  extra?: number[];
  stale?: number[];
  accounts?: { account_id: string; missing: number[]; extra: number[]; stale: number[] }[];
}

/** The WebSocket's answer to a send frame: the 200 body (`result`) or the problem. */
interface SendResultFrame {
  type: "send_result";
  ref: string;
  result?: SendResultBody;
  problem?: Problem;
}

// ---- mapping -------------------------------------------------------------------------------------

const EMPTY = new Uint8Array(0);
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const bytes = (text: string): Uint8Array<ArrayBuffer> => {
  const buf = Buffer.from(text, "base64");
  const out = new Uint8Array(buf.byteLength);
  out.set(buf);
  return out;
};

const KINDS: ReadonlyMap<string, EnvelopeType> = new Map([
  ["ciphertext", EnvelopeType.CIPHERTEXT],
  ["prekey", EnvelopeType.PREKEY_MESSAGE],
  ["delivery_receipt", EnvelopeType.SERVER_DELIVERY_RECEIPT],
  ["sealed_sender", EnvelopeType.SEALED_SENDER],
  ["sender_key", EnvelopeType.SENDER_KEY_MESSAGE],
  ["plaintext", EnvelopeType.PLAINTEXT_CONTENT],
]);
const KIND_NAMES: ReadonlyMap<EnvelopeType, string> = new Map([...KINDS].map(([k, t]) => [t, k]));

const typeOfKind = (kind: string | undefined): EnvelopeType =>
  kind === undefined
    ? EnvelopeType.UNSPECIFIED
    : (KINDS.get(kind) ?? (/^[0-9]{1,9}$/.test(kind) ? Number(kind) : EnvelopeType.UNSPECIFIED));
const kindOfType = (type: EnvelopeType): string => KIND_NAMES.get(type) ?? String(type);

function appOf(name: string): { app: App; providerId: string } {
  if (name === "messenger") return { app: App.MESSENGER, providerId: "" };
  if (name === "whatsapp") return { app: App.WHATSAPP, providerId: "" };
  if (name === "instagram") return { app: App.INSTAGRAM, providerId: "" };
  if (name.startsWith("provider:"))
    return { app: App.THIRD_PARTY, providerId: name.slice("provider:".length) };
  return { app: App.UNSPECIFIED, providerId: "" };
}

/** The handle a gateway user object names. */
function handleOf(user: MessengerUser): MessageInitShape<typeof HandleSchema> {
  const { app, providerId } = appOf(user.app);
  const value = user.id ?? user.phone ?? user.username ?? user.handle ?? "";
  return { app, providerId, value };
}

/** How the gateway's paths name a handle: `100004`, `whatsapp:+1...`, `instagram:ada.l`, `provider:acme:alice`. */
function handlePath(handle: { app: App; providerId: string; value: string }): string {
  switch (handle.app) {
    case App.MESSENGER:
      return handle.value;
    case App.WHATSAPP:
      return `whatsapp:${handle.value}`;
    case App.INSTAGRAM:
      return `instagram:${handle.value}`;
    default:
      return `provider:${handle.providerId}:${handle.value}`;
  }
}

const deviceOf = (d: JsonDevice): MessageInitShape<typeof DeviceSchema> => ({
  deviceId: d.device_id,
  registrationId: d.registration_id,
  name: d.name,
  createdAtMs: BigInt(d.created_at),
});

const accountOf = (p: JsonProfile): MessageInitShape<typeof AccountWithDevicesSchema> => ({
  account: { id: p.user.account_id, handle: handleOf(p.user) },
  devices: p.devices.map(deviceOf),
});

const groupOf = (g: JsonGroup): Group =>
  create(GroupSchema, {
    id: g.id,
    creatorAccountId: g.creator.account_id,
    revision: BigInt(g.revision),
    members: g.members.map(accountOf),
  });

const signedKeyOf = (k: JsonSignedPreKey) => ({
  keyId: k.key_id,
  publicKey: bytes(k.public_key),
  signature: bytes(k.signature),
});
const signedKeyJson = (k: SignedPreKey): JsonSignedPreKey => ({
  key_id: k.keyId,
  public_key: b64(k.publicKey),
  signature: b64(k.signature),
});

/**
 * Rebuilds the Envelope a gateway event carries, for the device it was delivered to (the inverse
 * of the gateway's rendering; receipts carry no provider id).
 */
export function messengerEventToEnvelope(
  event: MessengerEnvelopeEvent,
  destination: { accountId: string; deviceId: number },
): Envelope {
  const isReceipt = event.type === "delivery";
  const app = event.sender === undefined ? undefined : appOf(event.sender.app);
  return newEnvelope({
    id: event.server_id,
    clientMessageId: isReceipt ? (event.delivery?.mids[0] ?? "") : (event.mid ?? ""),
    type: isReceipt ? EnvelopeType.SERVER_DELIVERY_RECEIPT : typeOfKind(event.kind),
    source:
      event.sender === undefined
        ? undefined
        : { accountId: event.sender.account_id, deviceId: event.sender_device ?? 0 },
    sourceApp: app?.app,
    sourceProviderId: isReceipt ? "" : (app?.providerId ?? ""),
    sourceRegistrationId: event.sender_registration_id ?? 0,
    destination,
    destinationApp: App.MESSENGER,
    content: event.body === undefined ? EMPTY : bytes(event.body),
    serverTimestampMs: BigInt(event.server_timestamp),
    clientTimestampMs: BigInt((isReceipt ? event.delivery?.watermark : event.timestamp) ?? 0),
    ephemeral: event.ephemeral === true,
    urgent: event.urgent === true,
    groupId: event.group_id ?? "",
    forwarded: event.forwarded === true,
    reportTag: event.report_tag === undefined ? EMPTY : bytes(event.report_tag),
    serverFrankingTag: event.server_franking_tag === undefined ? EMPTY : bytes(event.server_franking_tag),
    sequence: BigInt(event.seq),
    messageRequest: event.message_request === true,
  });
}

const CODES: ReadonlyMap<string, Code> = new Map(
  Object.values(Code)
    .filter((v): v is Code => typeof v === "number")
    .map((c) => [codeName(c), c]),
);

const STATUS_CODES: Readonly<Record<number, Code>> = {
  400: Code.InvalidArgument,
  401: Code.Unauthenticated,
  403: Code.PermissionDenied,
  404: Code.NotFound,
  409: Code.Aborted,
  429: Code.ResourceExhausted,
  499: Code.Canceled,
  501: Code.Unimplemented,
  503: Code.Unavailable,
  504: Code.DeadlineExceeded,
};

function errorOf(status: number, problem: Problem): AppError {
  const code = (problem.code && CODES.get(problem.code)) || STATUS_CODES[status] || Code.Internal;
  return new AppError(code, problem.reason ?? codeName(code), problem.detail ?? `HTTP ${status}`);
}

const MAX_ACK_IDS = 1000;
/** The gateway's limit on a client WebSocket frame: larger sends go over HTTP. */
const MAX_SOCKET_FRAME_BYTES = 64 * 1024;

/** A call answered with 2xx (`body`) or with an expected problem the caller turns into an outcome. */
type Outcome<T> = { ok: true; body: T } | { ok: false; status: number; problem: Problem };

/** A send frame waiting for its `send_result`. */
interface PendingSend {
  socket: WebSocket;
  /** Problem statuses returned as outcomes rather than thrown. */
  expected: number[];
  resolve(outcome: Outcome<SendResultBody>): void;
  reject(err: AppError): void;
  timer: NodeJS.Timeout;
}

/** The 200 body of a send (and a send_result's `result`). */
interface SendResultBody {
  message_id: string;
  timestamp: number;
  duplicate: boolean;
}
const NORMAL_CLOSE = 1000;
const DISPLACED_CLOSE = 4000;

// ---- the transport -------------------------------------------------------------------------------

/**
 * Creates a Transport over the Messenger-style gateway. The gateway assigns numeric user ids, so
 * `registerAccount` ignores the handle and the app credential; it returns the new account and
 * keeps the access token it was issued. `registerDevice` with an AppCredentials value treats
 * `appToken` as an access token of another device of the same user (`client.registerDevice({
 * accountId, appToken: otherTransport.accessToken })`); without one, the primary device registers
 * the device and the new token is available from `issuedAccessToken(deviceId)` to hand over.
 * Device passwords are never sent: the gateway authenticates devices by access token only, so a
 * restarted application must pass the token it kept (`accessToken` option).
 */
export function createMessengerTransport(options: MessengerTransportOptions): MessengerTransport {
  return new MessengerTransport(options);
}

/** The Messenger-style gateway's Transport; see createMessengerTransport. */
export class MessengerTransport implements Transport {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly onAccessToken: MessengerTransportOptions["onAccessToken"];
  private device: { accountId: string; deviceId: number } | undefined;
  /** The sealed-sender trust root, as the gateway last returned it with a certificate. */
  private trustRoot: Uint8Array | undefined;
  /** `account.device` → access token (this device's, and those issued for devices it linked). */
  private readonly tokens = new Map<string, string>();
  private pendingToken: string | undefined;
  private readonly sockets = new Set<WebSocket>();
  private live: WebSocket | undefined;
  private readonly sendOverSocket: boolean;
  /** Send frames awaiting their results, by ref. */
  private readonly pendingSends = new Map<string, PendingSend>();
  private nextRef = 0;

  constructor(options: MessengerTransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.timeoutMs = options.callTimeoutMs ?? 15_000;
    // Looked up per call by default, so that a fetch installed later (or stubbed in tests) is used.
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.onAccessToken = options.onAccessToken;
    this.pendingToken = options.accessToken;
    this.sendOverSocket = options.sendOverSocket ?? true;
  }

  /** The current device's access token, if known (persist it to act as the device after a restart). */
  get accessToken(): string | undefined {
    return this.device === undefined ? this.pendingToken : this.tokens.get(keyOf(this.device));
  }

  /** The token the gateway issued for a device this (primary) device registered, to hand to that device. */
  issuedAccessToken(deviceId: number): string | undefined {
    return this.device === undefined ? undefined : this.tokens.get(`${this.device.accountId}.${deviceId}`);
  }

  setDeviceCredentials(credentials: DeviceCredentials): void {
    const device = { accountId: credentials.accountId, deviceId: credentials.deviceId };
    if (this.pendingToken !== undefined && !this.tokens.has(keyOf(device))) {
      this.tokens.set(keyOf(device), this.pendingToken);
    }
    this.pendingToken = undefined;
    if (this.device !== undefined && keyOf(this.device) !== keyOf(device)) this.closeSockets();
    this.device = device;
  }

  async registerAccount(
    request: RegisterAccountRequest,
    _auth: AppCredentials,
  ): Promise<RegisterAccountResponse> {
    const r = await this.call<{ user: MessengerUser; device: JsonDevice; access_token: string }>(
      "POST",
      "/v1/signup",
      {
        registration_id: request.registrationId,
        ...(request.deviceName === "" ? {} : { device_name: request.deviceName }),
        ...(request.minor ? { minor: true } : {}),
      },
      { token: null },
    );
    this.adopt(r.user.account_id, r.device.device_id, r.access_token);
    return create(RegisterAccountResponseSchema, {
      account: { id: r.user.account_id, handle: handleOf(r.user), createdAtMs: BigInt(r.device.created_at) },
      device: deviceOf(r.device),
    });
  }

  async registerDevice(
    request: RegisterDeviceRequest,
    auth?: AppCredentials,
  ): Promise<RegisterDeviceResponse> {
    const r = await this.call<{ user: MessengerUser; device: JsonDevice; access_token: string }>(
      "POST",
      "/v1/devices",
      {
        registration_id: request.registrationId,
        ...(request.deviceName === "" ? {} : { device_name: request.deviceName }),
      },
      auth === undefined ? {} : { token: auth.appToken },
    );
    if (auth === undefined) this.tokens.set(`${r.user.account_id}.${r.device.device_id}`, r.access_token);
    else this.adopt(r.user.account_id, r.device.device_id, r.access_token);
    return create(RegisterDeviceResponseSchema, { device: deviceOf(r.device) });
  }

  async removeDevice(request: RemoveDeviceRequest): Promise<void> {
    await this.call("DELETE", `/v1/me/devices/${request.deviceId}`);
  }

  async uploadKeys(request: UploadKeysRequest): Promise<UploadKeysResponse> {
    const body: Record<string, unknown> = {};
    if (request.identityKey.length > 0) body.identity_key = b64(request.identityKey);
    if (request.signedPreKey) body.signed_pre_key = signedKeyJson(request.signedPreKey);
    if (request.oneTimePreKeys.length > 0)
      body.one_time_pre_keys = request.oneTimePreKeys.map((k) => ({
        key_id: k.keyId,
        public_key: b64(k.publicKey),
      }));
    if (request.kyberPreKeys.length > 0) body.kyber_pre_keys = request.kyberPreKeys.map(signedKeyJson);
    if (request.lastResortKyberPreKey)
      body.last_resort_kyber_pre_key = signedKeyJson(request.lastResortKyberPreKey);
    const r = await this.call<{ one_time_pre_key_count: number; kyber_pre_key_count: number }>(
      "PUT",
      "/v1/me/keys",
      body,
    );
    return create(UploadKeysResponseSchema, {
      oneTimePreKeyCount: r.one_time_pre_key_count,
      kyberPreKeyCount: r.kyber_pre_key_count,
    });
  }

  async getPreKeyBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse> {
    const query = request.deviceId === 0 ? "" : `?device_id=${request.deviceId}`;
    const r = await this.outcome<{ user: MessengerUser; bundles: JsonBundle[] }>(
      "GET",
      `/v1/users/${encodeURIComponent(request.accountId)}/keys${query}`,
      undefined,
      [404],
    );
    if (!r.ok) return create(GetPreKeyBundlesResponseSchema, { result: { case: "notFound", value: {} } });
    return create(GetPreKeyBundlesResponseSchema, {
      result: {
        case: "bundles",
        value: {
          app: appOf(r.body.user.app).app,
          bundles: r.body.bundles.map((b) => ({
            deviceId: b.device_id,
            registrationId: b.registration_id,
            identityKey: bytes(b.identity_key),
            signedPreKey: b.signed_pre_key && signedKeyOf(b.signed_pre_key),
            oneTimePreKey: b.one_time_pre_key && {
              keyId: b.one_time_pre_key.key_id,
              publicKey: bytes(b.one_time_pre_key.public_key),
            },
            kyberPreKey: b.kyber_pre_key && signedKeyOf(b.kyber_pre_key),
            kyberPreKeyIsLastResort: b.kyber_pre_key_is_last_resort,
          })),
        },
      },
    });
  }

  async setThirdPartyReachable(reachable: boolean): Promise<boolean> {
    const r = await this.call<{ reachable: boolean }>("PUT", "/v1/me/settings/third_party_reachable", {
      reachable,
    });
    return r.reachable;
  }

  /**
   * GET /v1/me/requests: this device's held requests, each with its held messages rebuilt as
   * envelopes (ciphertext and franking tags), and held group invitations.
   */
  async listMessageRequests(): Promise<MessageRequest[]> {
    const device = this.requireDevice();
    const r = await this.call<{ requests: JsonRequest[] }>("GET", "/v1/me/requests");
    return r.requests.map((q) => {
      const handle = handleOf(q.sender);
      return create(MessageRequestSchema, {
        peerAccountId: q.sender.account_id,
        peerHandle: handle.app === App.UNSPECIFIED ? undefined : handle,
        groupId: q.group_id ?? "",
        envelopes: q.messages.map((m) => messengerEventToEnvelope(m, device)),
        messageCount: q.message_count,
        firstReceivedAtMs: BigInt(q.first_received_at),
      });
    });
  }

  async acceptMessageRequest(target: RequestTarget): Promise<number> {
    const path =
      "groupId" in target
        ? `/v1/me/requests/groups/${encodeURIComponent(target.groupId)}/accept`
        : `/v1/me/requests/${encodeURIComponent(target.peerAccountId)}/accept`;
    return (await this.call<{ released?: number }>("POST", path)).released ?? 0;
  }

  async declineMessageRequest(target: RequestTarget): Promise<number> {
    const path =
      "groupId" in target
        ? `/v1/me/requests/groups/${encodeURIComponent(target.groupId)}/decline`
        : `/v1/me/requests/${encodeURIComponent(target.peerAccountId)}/decline`;
    return (await this.call<{ deleted?: number }>("POST", path)).deleted ?? 0;
  }

  async block(peerAccountId: string): Promise<void> {
    await this.call("PUT", `/v1/me/blocks/${encodeURIComponent(peerAccountId)}`);
  }

  async unblock(peerAccountId: string): Promise<void> {
    await this.call("DELETE", `/v1/me/blocks/${encodeURIComponent(peerAccountId)}`);
  }

  async setRequestsPolicy(policy: RequestsPolicy): Promise<void> {
    await this.call("PUT", "/v1/me/settings/requests_policy", {
      policy: policy === RequestsPolicy.HOLD ? "hold" : "deliver_marked",
    });
  }

  async getThirdPartyReachable(): Promise<boolean> {
    return (await this.call<{ reachable: boolean }>("GET", "/v1/me/settings/third_party_reachable"))
      .reachable;
  }

  async getPreKeyCount(_request: GetPreKeyCountRequest): Promise<GetPreKeyCountResponse> {
    const r = await this.call<{ one_time_pre_key_count: number; kyber_pre_key_count: number }>(
      "GET",
      "/v1/me/keys/count",
    );
    return create(GetPreKeyCountResponseSchema, {
      oneTimePreKeyCount: r.one_time_pre_key_count,
      kyberPreKeyCount: r.kyber_pre_key_count,
    });
  }

  async resolveHandle(request: ResolveHandleRequest): Promise<ResolveHandleResponse> {
    const h = request.handle;
    if (h === undefined) throw new AppError(Code.InvalidArgument, "HANDLE_REQUIRED", "handle is required");
    const found = await this.profile(handlePath(h));
    return create(ResolveHandleResponseSchema, {
      result:
        found === undefined ? { case: "notFound", value: {} } : { case: "found", value: accountOf(found) },
    });
  }

  async getAccount(request: GetAccountRequest): Promise<GetAccountResponse> {
    const found = await this.profile(request.accountId);
    return create(GetAccountResponseSchema, {
      result:
        found === undefined ? { case: "notFound", value: {} } : { case: "found", value: accountOf(found) },
    });
  }

  /** POST /v1/me/reports: a franked report of a received message (docs/safety.md). */
  async reportMessage(request: ReportMessageRequest): Promise<ReportMessageResponse> {
    const sender = request.sender;
    const r = await this.call<{ report_id: string }>("POST", "/v1/me/reports", {
      server_id: request.messageId,
      ...(sender && sender.accountId !== ""
        ? { sender: { account_id: sender.accountId, device_id: sender.deviceId } }
        : {}),
      server_timestamp: Number(request.serverTimestampMs),
      plaintext: b64(request.plaintext),
      franking_key: b64(request.frankingKey),
      report_tag: b64(request.reportTag),
      server_franking_tag: b64(request.serverFrankingTag),
      ...(request.senderCertificate.length > 0 ? { sender_certificate: b64(request.senderCertificate) } : {}),
      reason: request.reason,
    });
    return create(ReportMessageResponseSchema, { reportId: r.report_id, sender });
  }

  async sendMessage(request: SendMessageRequest): Promise<SendOutcome> {
    const r = await this.send(
      "send",
      "/v1/me/messages",
      {
        recipient: { account_id: request.destinationAccountId },
        notification_type: request.urgent ? "REGULAR" : "NO_PUSH",
        // The same body is the socket's send frame and the POST's body.
        ...(request.noDeliveryReceipt ? { server_receipt: false } : {}),
        message: {
          ...this.messageOptions(request),
          ciphertexts: request.messages.map((m) => ({
            device_id: m.deviceId,
            registration_id: m.registrationId,
            type: kindOfType(m.type),
            body: b64(m.content),
          })),
        },
      },
      [404, 409],
    );
    if (r.ok)
      return {
        kind: "sent",
        messageId: r.body.message_id,
        serverTimestampMs: r.body.timestamp,
        duplicate: r.body.duplicate,
      };
    const p = r.problem;
    if (r.status === 404 && p.reason === "RECIPIENT_NOT_FOUND") return { kind: "not_found" };
    if (r.status === 409 && p.reason === "DEVICES_CHANGED") {
      const accountId = p.account_id ?? request.destinationAccountId;
      if ((p.stale ?? []).length > 0) return { kind: "stale", accountId, staleDevices: p.stale ?? [] };
      return { kind: "mismatched", accountId, missingDevices: p.missing ?? [], extraDevices: p.extra ?? [] };
    }
    throw errorOf(r.status, p);
  }

  /** POST /v1/sealed/messages without the access token: only the recipient's access key. */
  async sendSealedMessage(request: SendMessageRequest, accessKey: Uint8Array): Promise<SendOutcome> {
    const r = await this.outcome<{ message_id: string; timestamp: number; duplicate: boolean }>(
      "POST",
      "/v1/sealed/messages",
      {
        recipient: { account_id: request.destinationAccountId },
        access_key: b64(accessKey),
        message: {
          mid: request.clientMessageId,
          timestamp: Number(request.clientTimestampMs),
          ...(request.forwarded ? { forwarded: true } : {}),
          ...(request.reportTag.length > 0 ? { report_tag: b64(request.reportTag) } : {}),
          ciphertexts: request.messages.map((m) => ({
            device_id: m.deviceId,
            registration_id: m.registrationId,
            type: kindOfType(m.type),
            body: b64(m.content),
          })),
        },
      },
      [409],
      { token: null },
    );
    if (r.ok)
      return {
        kind: "sent",
        messageId: r.body.message_id,
        serverTimestampMs: r.body.timestamp,
        duplicate: r.body.duplicate,
      };
    const p = r.problem;
    const accountId = p.account_id ?? request.destinationAccountId;
    if ((p.stale ?? []).length > 0) return { kind: "stale", accountId, staleDevices: p.stale ?? [] };
    return { kind: "mismatched", accountId, missingDevices: p.missing ?? [], extraDevices: p.extra ?? [] };
  }

  async getSenderCertificate(): Promise<{ certificate: Uint8Array; expiresAtMs: number }> {
    const r = await this.call<{ certificate: string; expires_at: number; trust_root: string }>(
      "GET",
      "/v1/me/sender_certificate",
    );
    this.trustRoot = bytes(r.trust_root);
    return { certificate: bytes(r.certificate), expiresAtMs: r.expires_at };
  }

  async getSealedSenderTrustRoot(): Promise<Uint8Array> {
    if (this.trustRoot === undefined) await this.getSenderCertificate();
    return this.trustRoot ?? EMPTY;
  }

  async setUnidentifiedAccess(
    access: { accessKey?: Uint8Array; unrestricted?: boolean } | undefined,
  ): Promise<void> {
    await this.call(
      "PUT",
      "/v1/me/settings/unidentified_access",
      access === undefined
        ? { disabled: true }
        : {
            ...(access.accessKey !== undefined ? { access_key: b64(access.accessKey) } : {}),
            unrestricted: access.unrestricted ?? false,
          },
    );
  }

  async sendGroupMessage(request: SendGroupMessageRequest): Promise<GroupSendOutcome> {
    const body: Record<string, unknown> = {
      notification_type: request.urgent ? "REGULAR" : "NO_PUSH",
      message: { ...this.messageOptions(request), body: b64(request.content) },
    };
    if (request.expectedRecipients.length > 0) {
      body.expected_recipients = request.expectedRecipients.map((r) => ({
        user: { account_id: r.accountId },
        devices: r.devices.map((d) => ({ device_id: d.deviceId, registration_id: d.registrationId })),
      }));
    }
    const r = await this.send(
      "send_group",
      `/v1/groups/${encodeURIComponent(request.groupId)}/messages`,
      body,
      [403, 409],
      { group_id: request.groupId },
    );
    if (r.ok)
      return {
        kind: "sent",
        messageId: r.body.message_id,
        serverTimestampMs: r.body.timestamp,
        duplicate: r.body.duplicate,
      };
    const p = r.problem;
    if (r.status === 403 && p.reason === "NOT_A_MEMBER") return { kind: "not_a_member" };
    if (r.status === 409 && p.reason === "DEVICES_CHANGED") {
      const accounts: GroupDeviceMismatch[] = (p.accounts ?? []).map((a) => ({
        accountId: a.account_id,
        missingDevices: a.missing,
        extraDevices: a.extra,
        staleDevices: a.stale,
      }));
      return { kind: "mismatched", accounts };
    }
    throw errorOf(r.status, p);
  }

  async createGroup(request: CreateGroupRequest): Promise<Group> {
    return groupOf(
      await this.call<JsonGroup>("POST", "/v1/groups", {
        members: request.memberAccountIds.map((account_id) => ({ account_id })),
      }),
    );
  }

  async addGroupMembers(request: AddGroupMembersRequest): Promise<Group> {
    return groupOf(
      await this.call<JsonGroup>("POST", `/v1/groups/${encodeURIComponent(request.groupId)}/members`, {
        members: request.accountIds.map((account_id) => ({ account_id })),
      }),
    );
  }

  async removeGroupMembers(request: RemoveGroupMembersRequest): Promise<Group> {
    let group: JsonGroup | undefined;
    for (const accountId of request.accountIds) {
      group = await this.call<JsonGroup>(
        "DELETE",
        `/v1/groups/${encodeURIComponent(request.groupId)}/members/${encodeURIComponent(accountId)}`,
      );
    }
    return group === undefined
      ? this.getGroup(create(GetGroupRequestSchema, { groupId: request.groupId }))
      : groupOf(group);
  }

  async getGroup(request: GetGroupRequest): Promise<Group> {
    return groupOf(await this.call<JsonGroup>("GET", `/v1/groups/${encodeURIComponent(request.groupId)}`));
  }

  receive(options: ReceiveOptions = {}): ReceiveSubscription {
    const queue = new AsyncQueue<ReceiveEvent>();
    const device = this.requireDevice();
    const token = this.tokens.get(keyOf(device));
    if (token === undefined) {
      queue.fail(noToken());
      return { [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](), close: () => queue.end(true) };
    }
    const query = options.window === undefined ? "" : `?window=${options.window}`;
    const socket = new WebSocket(`${this.baseUrl.replace(/^http/, "ws")}/v1/stream${query}`, {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
      handshakeTimeout: this.timeoutMs,
    });
    this.sockets.add(socket);
    this.live = socket;
    let failure: AppError | undefined;
    socket.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      let event: { type?: string; problem?: Problem };
      try {
        event = JSON.parse(data.toString("utf8")) as typeof event;
      } catch {
        return;
      }
      switch (event.type) {
        case "message":
        case "delivery":
          queue.push({
            kind: "envelope",
            envelope: messengerEventToEnvelope(event as MessengerEnvelopeEvent, device),
          });
          break;
        case "queue_empty":
          queue.push({ kind: "queue_empty" });
          break;
        case "send_result":
          this.settleSend(event as SendResultFrame);
          break;
        case "displaced":
          failure = new AppError(Code.Aborted, "DISPLACED", "another connection subscribed this device");
          break;
        case "error":
          // Errors answer a bad frame (the socket stays up) or precede a close (kept as its cause).
          failure = errorOf(event.problem?.status ?? 500, event.problem ?? {});
          break;
        default:
          break;
      }
    });
    socket.on("unexpected-response", (_req, res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let problem: Problem = {};
        try {
          problem = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Problem;
        } catch {
          // Not a problem document: the status alone says enough.
        }
        queue.fail(errorOf(status, problem));
        socket.terminate();
      });
    });
    socket.on("error", (err: Error) => {
      failure ??= new AppError(
        Code.Unavailable,
        "STREAM_FAILED",
        `the gateway stream failed: ${err.message}`,
        {
          cause: err,
        },
      );
    });
    socket.on("close", (code: number) => {
      this.sockets.delete(socket);
      if (this.live === socket) this.live = undefined;
      this.failSends(socket);
      if (queue.closed) return;
      if (code === DISPLACED_CLOSE)
        queue.fail(new AppError(Code.Aborted, "DISPLACED", "another connection subscribed this device"));
      else
        queue.fail(
          failure ?? new AppError(Code.Unavailable, "STREAM_CLOSED", `the gateway stream closed (${code})`),
        );
    });
    return {
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
      close: () => {
        queue.end(true);
        if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING)
          socket.close(NORMAL_CLOSE);
      },
    };
  }

  async ack(messageIds: string[]): Promise<void> {
    for (let i = 0; i < messageIds.length; i += MAX_ACK_IDS) {
      const ids = messageIds.slice(i, i + MAX_ACK_IDS);
      const socket = this.live;
      if (socket !== undefined && socket.readyState === WebSocket.OPEN) {
        await new Promise<void>((resolve, reject) =>
          socket.send(JSON.stringify({ type: "ack", ids }), (err) =>
            err ? reject(asAppError(err)) : resolve(),
          ),
        );
      } else {
        await this.call("POST", "/v1/me/acks", { ids });
      }
    }
  }

  async close(): Promise<void> {
    this.closeSockets();
  }

  // ---- internals ---------------------------------------------------------------------------------

  /**
   * A send: a frame of `type` on the live socket when one is open (and `sendOverSocket`), else a
   * POST of `body` to `path`. Problems with a status in `expected` are returned, others thrown.
   */
  private async send(
    type: "send" | "send_group",
    path: string,
    body: Record<string, unknown>,
    expected: number[],
    frameFields: Record<string, unknown> = {},
  ): Promise<Outcome<SendResultBody>> {
    const socket = this.live;
    if (!this.sendOverSocket || socket === undefined || socket.readyState !== WebSocket.OPEN)
      return this.outcome<SendResultBody>("POST", path, body, expected);
    const ref = String(++this.nextRef);
    const text = JSON.stringify({ type, ref, ...frameFields, ...body });
    // A frame over the gateway's limit would close the socket (1009): such a send is a POST.
    if (text.length * 3 > MAX_SOCKET_FRAME_BYTES && Buffer.byteLength(text) > MAX_SOCKET_FRAME_BYTES)
      return this.outcome<SendResultBody>("POST", path, body, expected);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingSends.delete(ref);
        reject(new AppError(Code.DeadlineExceeded, "GATEWAY_TIMEOUT", "the gateway did not answer in time"));
      }, this.timeoutMs);
      this.pendingSends.set(ref, { socket, expected, resolve, reject, timer });
      socket.send(text, (err) => {
        if (err) this.settle(ref, (p) => p.reject(asAppError(err)));
      });
    });
  }

  private settle(ref: string, fn: (pending: PendingSend) => void): void {
    const pending = this.pendingSends.get(ref);
    if (pending === undefined) return;
    this.pendingSends.delete(ref);
    clearTimeout(pending.timer);
    fn(pending);
  }

  private settleSend(frame: SendResultFrame): void {
    this.settle(frame.ref, (p) => {
      if (frame.result !== undefined) return p.resolve({ ok: true, body: frame.result });
      const problem = frame.problem ?? {};
      const status = problem.status ?? 500;
      if (p.expected.includes(status)) p.resolve({ ok: false, status, problem });
      else p.reject(errorOf(status, problem));
    });
  }

  /** Fails the sends awaiting results on a socket that closed: they may or may not have been stored. */
  private failSends(socket: WebSocket): void {
    for (const [ref, pending] of this.pendingSends) {
      if (pending.socket !== socket) continue;
      this.settle(ref, (p) =>
        p.reject(
          new AppError(
            Code.Unavailable,
            "STREAM_CLOSED",
            "the gateway stream closed before the send was answered: retry with the same mid",
          ),
        ),
      );
    }
  }

  private closeSockets(): void {
    for (const socket of this.sockets) socket.close(NORMAL_CLOSE);
  }

  private adopt(accountId: string, deviceId: number, token: string): void {
    this.tokens.set(`${accountId}.${deviceId}`, token);
    this.pendingToken = token;
    this.onAccessToken?.(token, { accountId, deviceId });
  }

  private messageOptions(request: {
    clientMessageId: string;
    clientTimestampMs: bigint;
    ephemeral: boolean;
    forwarded: boolean;
    reportTag: Uint8Array;
  }): Record<string, unknown> {
    return {
      mid: request.clientMessageId,
      timestamp: Number(request.clientTimestampMs),
      ...(request.ephemeral ? { ephemeral: true } : {}),
      ...(request.forwarded ? { forwarded: true } : {}),
      ...(request.reportTag.length > 0 ? { report_tag: b64(request.reportTag) } : {}),
    };
  }

  private async profile(ref: string): Promise<JsonProfile | undefined> {
    const r = await this.outcome<JsonProfile>(
      "GET",
      `/v1/users/${encodeURIComponent(ref)}`,
      undefined,
      [404],
    );
    return r.ok ? r.body : undefined;
  }

  private requireDevice(): { accountId: string; deviceId: number } {
    if (this.device === undefined)
      throw new AppError(Code.Unauthenticated, "NO_CREDENTIALS", "no device credentials set");
    return this.device;
  }

  /** A call whose non-2xx answers throw (as AppError with the problem's code and reason). */
  private async call<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    opts: { token?: string | null } = {},
  ): Promise<T> {
    const r = await this.outcome<T>(method, path, body, [], opts);
    if (!r.ok) throw errorOf(r.status, r.problem);
    return r.body;
  }

  /** A call whose problem answers with a status in `expected` are returned rather than thrown. */
  private async outcome<T>(
    method: string,
    path: string,
    body: unknown,
    expected: number[],
    opts: { token?: string | null } = {},
  ): Promise<Outcome<T>> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (opts.token !== null) {
      const token =
        opts.token ?? (this.device === undefined ? this.pendingToken : this.tokens.get(keyOf(this.device)));
      if (token === undefined) throw noToken();
      headers.authorization = `Bearer ${token}`;
    }
    // The deadline covers the answer's body too.
    let res: Response;
    let text: string;
    try {
      [res, text] = await withTimeout(this.timeoutMs, async (signal) => {
        const r = await this.fetch(`${this.baseUrl}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal,
        });
        return [r, await r.text()] as const;
      });
    } catch (err) {
      throw asAppError(err);
    }
    if (res.ok) return { ok: true, body: (text === "" ? undefined : JSON.parse(text)) as T };
    let problem: Problem = {};
    try {
      problem = JSON.parse(text) as Problem;
    } catch {
      // A proxy's HTML error page: the status is all there is.
    }
    if (expected.includes(res.status)) return { ok: false, status: res.status, problem };
    throw errorOf(res.status, problem);
  }
}

const keyOf = (d: { accountId: string; deviceId: number }) => `${d.accountId}.${d.deviceId}`;

const noToken = () =>
  new AppError(
    Code.Unauthenticated,
    "NO_ACCESS_TOKEN",
    "no access token for this device: pass the token kept from signup or device registration (accessToken option)",
  );

function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError"))
    return new AppError(Code.DeadlineExceeded, "GATEWAY_TIMEOUT", "the gateway did not answer in time", {
      cause: err,
    });
  return new AppError(Code.Unavailable, "GATEWAY_UNREACHABLE", "the gateway could not be reached", {
    cause: err,
  });
}
