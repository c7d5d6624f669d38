// The Transport over the Instagram-style gateway's native HTTP/JSON API (services/gateway-instagram):
// bearer access tokens, direct threads and thread items, live delivery over Server-Sent Events.
// Uses the platform's fetch; no extra dependencies.
import { create } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import {
  App,
  newEnvelope,
  EnvelopeType,
  GetAccountResponseSchema,
  GetPreKeyBundlesResponseSchema,
  GetPreKeyCountResponseSchema,
  GroupSchema,
  MessageRequestSchema,
  RegisterAccountResponseSchema,
  RegisterDeviceResponseSchema,
  ReportMessageResponseSchema,
  ResolveHandleResponseSchema,
  UploadKeysResponseSchema,
  type AddGroupMembersRequest,
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
  type UploadKeysRequest,
  type UploadKeysResponse,
} from "@switchboard/proto";
import { AsyncQueue } from "../internal/async-queue.js";
import { withTimeout } from "../internal/timeout.js";
import type {
  AppCredentials,
  DeviceCredentials,
  GroupSendOutcome,
  ReceiveEvent,
  ReceiveOptions,
  ReceiveSubscription,
  RequestTarget,
  SendOutcome,
  Transport,
} from "../transport.js";
import { parseEventStream } from "./sse.js";

/** Options of createInstagramTransport. */
export interface InstagramTransportOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8082`. */
  baseUrl: string;
  /** The device to act as (its secret signs in with POST /v1/auth/token when no token is known). */
  credentials?: DeviceCredentials;
  /** An access token of `credentials`' device, if the application kept one. */
  accessToken?: string;
  /** Deadline of each HTTP call (the request and reading its answer), ms; a call past it fails DEADLINE_EXCEEDED `GATEWAY_TIMEOUT`. Default 15,000. */
  callTimeoutMs?: number;
  /**
   * The fetch to call the gateway with (default: the global `fetch`, looked up at each call). Pass one
   * bound to your own HTTP client or connection pool, e.g. an undici `Agent` with keep-alive; it must
   * return a `Response` whose body streams (the event stream reads it incrementally).
   */
  fetch?: typeof fetch;
}

// ---- JSON shapes of the gateway (see its /openapi.json) ------------------------------------------

type AppName = "instagram" | "whatsapp" | "messenger" | "third_party" | "unspecified";

interface JsonDevice {
  device_id: number;
  registration_id: number;
  name: string;
  created_at_ms: number;
}

interface JsonUser {
  account_id: string;
  ref: string;
  app: AppName;
  handle: string;
  provider_id?: string;
  created_at_ms: number;
  devices: JsonDevice[];
}

interface JsonThread {
  thread_id: string;
  thread_type: "private" | "group";
  users: {
    account_id: string;
    ref?: string;
    app: AppName;
    devices: { device_id: number; registration_id: number }[];
  }[];
  creator_account_id?: string;
  revision?: number;
}

interface JsonSignedPreKey {
  key_id: number;
  public_key: string;
  signature: string;
}

interface JsonItem {
  server_id: string;
  thread_id: string | null;
  thread_type: "private" | "group";
  client_context: string;
  item_type: "message" | "typing";
  kind: string;
  sender: {
    account_id: string;
    device_id: number;
    registration_id: number;
    app: AppName;
    provider_id?: string;
  } | null;
  recipient: { account_id: string; device_id: number };
  body: string;
  report_tag?: string;
  server_franking_tag?: string;
  forwarded: boolean;
  urgent: boolean;
  client_timestamp_ms: number;
  server_timestamp_ms: number;
  seq: number;
}

/** A thread of `GET /v1/direct/pending` (a message request). */
interface JsonPendingThread {
  thread_id: string;
  sender: { account_id: string; ref?: string };
  item_count: number;
  first_item_at_ms: number;
}

interface Problem {
  status?: number;
  reason?: string;
  code?: string;
  detail?: string;
  account_id?: string;
  missing_devices?: number[];
  extra_devices?: number[];
  stale_devices?: number[];
  accounts?: {
    account_id: string;
    missing_devices: number[];
    extra_devices: number[];
    stale_devices: number[];
  }[];
}

// ---- mapping -------------------------------------------------------------------------------------

const APPS: Record<AppName, App> = {
  instagram: App.INSTAGRAM,
  whatsapp: App.WHATSAPP,
  messenger: App.MESSENGER,
  third_party: App.THIRD_PARTY,
  unspecified: App.UNSPECIFIED,
};

const KINDS: Record<string, EnvelopeType> = {
  ciphertext: EnvelopeType.CIPHERTEXT,
  prekey: EnvelopeType.PREKEY_MESSAGE,
  sealed_sender: EnvelopeType.SEALED_SENDER,
  sender_key: EnvelopeType.SENDER_KEY_MESSAGE,
  plaintext: EnvelopeType.PLAINTEXT_CONTENT,
  delivery_receipt: EnvelopeType.SERVER_DELIVERY_RECEIPT,
};

const CIPHERTEXT_KINDS: Partial<Record<EnvelopeType, string>> = {
  [EnvelopeType.CIPHERTEXT]: "ciphertext",
  [EnvelopeType.PREKEY_MESSAGE]: "prekey",
  [EnvelopeType.SEALED_SENDER]: "sealed_sender",
  [EnvelopeType.PLAINTEXT_CONTENT]: "plaintext",
};

const CODES: Record<string, Code> = Object.fromEntries(
  Object.entries({
    CANCELLED: Code.Canceled,
    UNKNOWN: Code.Unknown,
    INVALID_ARGUMENT: Code.InvalidArgument,
    DEADLINE_EXCEEDED: Code.DeadlineExceeded,
    NOT_FOUND: Code.NotFound,
    ALREADY_EXISTS: Code.AlreadyExists,
    PERMISSION_DENIED: Code.PermissionDenied,
    RESOURCE_EXHAUSTED: Code.ResourceExhausted,
    FAILED_PRECONDITION: Code.FailedPrecondition,
    ABORTED: Code.Aborted,
    OUT_OF_RANGE: Code.OutOfRange,
    UNIMPLEMENTED: Code.Unimplemented,
    INTERNAL: Code.Internal,
    UNAVAILABLE: Code.Unavailable,
    DATA_LOSS: Code.DataLoss,
    UNAUTHENTICATED: Code.Unauthenticated,
  }),
);

function codeOfStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.NotFound;
    case 409:
      return Code.Aborted;
    case 429:
      return Code.ResourceExhausted;
    case 499:
      return Code.Canceled;
    case 503:
      return Code.Unavailable;
    case 504:
      return Code.DeadlineExceeded;
    default:
      return status >= 500 ? Code.Internal : Code.Unknown;
  }
}

const b64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
const unb64 = (text: string | undefined): Uint8Array<ArrayBuffer> => {
  const buf = Buffer.from(text ?? "", "base64");
  const out = new Uint8Array(buf.byteLength);
  out.set(buf);
  return out;
};

/** The ref of a handle in the gateway's syntax (`ada.l`, `whatsapp:+1555…`, `acme:alice`). */
function refOfHandle(handle: { app: App; value: string; providerId: string }): string {
  switch (handle.app) {
    case App.INSTAGRAM:
      return handle.value;
    case App.WHATSAPP:
      return `whatsapp:${handle.value}`;
    case App.MESSENGER:
      return `messenger:${handle.value}`;
    case App.THIRD_PARTY:
      return `${handle.providerId}:${handle.value}`;
    default:
      throw new AppError(Code.InvalidArgument, "INVALID_HANDLE", "the handle names no app");
  }
}

function handleOfUser(u: { app: AppName; handle?: string; ref?: string; provider_id?: string }) {
  const app = APPS[u.app] ?? App.UNSPECIFIED;
  let value = u.handle ?? u.ref ?? "";
  if (u.handle === undefined && u.ref !== undefined && app !== App.INSTAGRAM)
    value = u.ref.slice(u.ref.indexOf(":") + 1);
  const providerId =
    u.provider_id ??
    (app === App.THIRD_PARTY && u.ref !== undefined ? u.ref.slice(0, u.ref.indexOf(":")) : "");
  return { app, value, providerId };
}

function deviceOf(d: JsonDevice) {
  return {
    deviceId: d.device_id,
    registrationId: d.registration_id,
    name: d.name,
    createdAtMs: BigInt(d.created_at_ms),
  };
}

function accountWithDevices(u: JsonUser) {
  return {
    account: { id: u.account_id, handle: handleOfUser(u), createdAtMs: BigInt(u.created_at_ms) },
    devices: u.devices.map(deviceOf),
  };
}

function groupOfThread(t: JsonThread): Group {
  return create(GroupSchema, {
    id: t.thread_id,
    creatorAccountId: t.creator_account_id ?? "",
    revision: BigInt(t.revision ?? 0),
    members: t.users.map((u) => ({
      account: { id: u.account_id, handle: u.ref === undefined ? undefined : handleOfUser(u) },
      devices: u.devices.map((d) => ({ deviceId: d.device_id, registrationId: d.registration_id })),
    })),
  });
}

/** The envelope a thread item (the data of an `item` or `receipt` event) stands for. */
export function envelopeOfItem(item: JsonItem): Envelope {
  const s = item.sender;
  return newEnvelope({
    id: item.server_id,
    clientMessageId: item.client_context,
    type: KINDS[item.kind] ?? EnvelopeType.UNSPECIFIED,
    source: s === null ? undefined : { accountId: s.account_id, deviceId: s.device_id },
    sourceApp: s === null ? App.UNSPECIFIED : (APPS[s.app] ?? App.UNSPECIFIED),
    sourceProviderId: s?.provider_id ?? "",
    sourceRegistrationId: s?.registration_id ?? 0,
    destination: { accountId: item.recipient.account_id, deviceId: item.recipient.device_id },
    destinationApp: App.INSTAGRAM,
    content: unb64(item.body),
    serverTimestampMs: BigInt(item.server_timestamp_ms),
    clientTimestampMs: BigInt(item.client_timestamp_ms),
    ephemeral: item.item_type === "typing",
    urgent: item.urgent,
    groupId: item.thread_type === "group" ? (item.thread_id ?? "") : "",
    forwarded: item.forwarded,
    reportTag: unb64(item.report_tag),
    serverFrankingTag: unb64(item.server_franking_tag),
    sequence: BigInt(item.seq),
  });
}

function signedKey(k: { keyId: number; publicKey: Uint8Array; signature: Uint8Array } | undefined) {
  return k && { key_id: k.keyId, public_key: b64(k.publicKey), signature: b64(k.signature) };
}

function signedKeyOf(k: JsonSignedPreKey | undefined) {
  return k && { keyId: k.key_id, publicKey: unb64(k.public_key), signature: unb64(k.signature) };
}

const MAX_ACK_IDS = 1000;

// ---- the transport -------------------------------------------------------------------------------

/**
 * Creates a Transport over the Instagram-style gateway. Accounts are registered by the gateway
 * (the app credential argument of registerAccount is not needed and ignored); the transport keeps
 * the access tokens it is issued and signs in with the device secret when it has none.
 */
export function createInstagramTransport(options: InstagramTransportOptions): InstagramTransport {
  return new InstagramTransport(options);
}

/** The Instagram-style gateway's Transport; see createInstagramTransport. */
export class InstagramTransport implements Transport {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private credentials: DeviceCredentials | undefined;
  /** `account.device` → access token. */
  private readonly tokens = new Map<string, string>();
  /** The sealed-sender trust root, as the gateway last returned it with a certificate. */
  private trustRoot: Uint8Array | undefined;
  /** Peer account id → one-to-one thread id. */
  private readonly threads = new Map<string, string>();
  private readonly streams = new Set<AbortController>();

  constructor(options: InstagramTransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.timeoutMs = options.callTimeoutMs ?? 15_000;
    // Looked up per call by default, so that a fetch installed later (or stubbed in tests) is used.
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.credentials = options.credentials;
    if (options.credentials && options.accessToken)
      this.tokens.set(keyOf(options.credentials), options.accessToken);
  }

  /** The current device's access token, if one has been issued (store it to skip signing in). */
  get accessToken(): string | undefined {
    return this.credentials && this.tokens.get(keyOf(this.credentials));
  }

  setDeviceCredentials(credentials: DeviceCredentials): void {
    this.credentials = credentials;
  }

  async registerAccount(
    request: RegisterAccountRequest,
    _auth: AppCredentials,
  ): Promise<RegisterAccountResponse> {
    if (request.handle?.app !== App.INSTAGRAM)
      throw new AppError(
        Code.InvalidArgument,
        "NOT_AN_INSTAGRAM_HANDLE",
        "register a username (APP_INSTAGRAM)",
      );
    const r = await this.call<{ account: JsonUser; device: JsonDevice; access_token: string }>(
      "POST",
      "/v1/accounts",
      {
        username: request.handle.value,
        registration_id: request.registrationId,
        password: request.password,
        ...(request.deviceName ? { device_name: request.deviceName } : {}),
        ...(request.minor ? { minor: true } : {}),
      },
      { auth: false },
    );
    this.tokens.set(`${r.account.account_id}.${r.device.device_id}`, r.access_token);
    return create(RegisterAccountResponseSchema, {
      account: accountWithDevices(r.account).account,
      device: deviceOf(r.device),
    });
  }

  async registerDevice(
    request: RegisterDeviceRequest,
    auth?: AppCredentials,
  ): Promise<RegisterDeviceResponse> {
    if (auth !== undefined)
      throw new AppError(
        Code.Unimplemented,
        "APP_CREDENTIALS_UNSUPPORTED",
        "the Instagram-style gateway links devices through the primary device (approveDeviceLink)",
      );
    const r = await this.call<{ device: JsonDevice; access_token: string }>("POST", "/v1/devices", {
      registration_id: request.registrationId,
      password: request.password,
      ...(request.deviceName ? { device_name: request.deviceName } : {}),
    });
    this.tokens.set(`${request.accountId}.${r.device.device_id}`, r.access_token);
    return create(RegisterDeviceResponseSchema, { device: deviceOf(r.device) });
  }

  async removeDevice(request: RemoveDeviceRequest): Promise<void> {
    await this.call("DELETE", `/v1/devices/${request.deviceId}`);
  }

  async uploadKeys(request: UploadKeysRequest): Promise<UploadKeysResponse> {
    const r = await this.call<{ one_time_pre_key_count: number; kyber_pre_key_count: number }>(
      "PUT",
      "/v1/me/keys",
      {
        ...(request.identityKey.length > 0 ? { identity_key: b64(request.identityKey) } : {}),
        ...(request.signedPreKey ? { signed_pre_key: signedKey(request.signedPreKey) } : {}),
        one_time_pre_keys: request.oneTimePreKeys.map((k) => ({
          key_id: k.keyId,
          public_key: b64(k.publicKey),
        })),
        kyber_pre_keys: request.kyberPreKeys.map(signedKey),
        ...(request.lastResortKyberPreKey
          ? { last_resort_kyber_pre_key: signedKey(request.lastResortKyberPreKey) }
          : {}),
      },
    );
    return create(UploadKeysResponseSchema, {
      oneTimePreKeyCount: r.one_time_pre_key_count,
      kyberPreKeyCount: r.kyber_pre_key_count,
    });
  }

  async getPreKeyBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse> {
    const r = await this.callOutcome<{
      app: AppName;
      devices: {
        device_id: number;
        registration_id: number;
        identity_key: string;
        signed_pre_key?: JsonSignedPreKey;
        one_time_pre_key?: { key_id: number; public_key: string };
        kyber_pre_key?: JsonSignedPreKey;
        kyber_pre_key_is_last_resort: boolean;
      }[];
    }>(
      "GET",
      `/v1/users/${encodeURIComponent(request.accountId)}/keys?device_id=${request.deviceId}`,
      undefined,
      [404],
    );
    if (!r.ok) return create(GetPreKeyBundlesResponseSchema, { result: { case: "notFound", value: {} } });
    return create(GetPreKeyBundlesResponseSchema, {
      result: {
        case: "bundles",
        value: {
          app: APPS[r.body.app] ?? App.UNSPECIFIED,
          bundles: r.body.devices.map((b) => ({
            deviceId: b.device_id,
            registrationId: b.registration_id,
            identityKey: unb64(b.identity_key),
            signedPreKey: signedKeyOf(b.signed_pre_key),
            oneTimePreKey: b.one_time_pre_key && {
              keyId: b.one_time_pre_key.key_id,
              publicKey: unb64(b.one_time_pre_key.public_key),
            },
            kyberPreKey: signedKeyOf(b.kyber_pre_key),
            kyberPreKeyIsLastResort: b.kyber_pre_key_is_last_resort,
          })),
        },
      },
    });
  }

  async setThirdPartyReachable(reachable: boolean): Promise<boolean> {
    const r = await this.call<{ third_party_reachable: boolean }>("PUT", "/v1/me/settings/interop", {
      third_party_reachable: reachable,
    });
    return r.third_party_reachable;
  }

  /**
   * The requests folder (`GET /v1/direct/pending`), each request with this device's held items
   * (`GET /v1/direct/pending/{thread_id}/items`) as envelopes, so the client can preview and
   * report them without accepting. Requests appear once a device of the account has drained its
   * queue (connected to the event stream) since they were sent. No group invitations.
   */
  async listMessageRequests(): Promise<MessageRequest[]> {
    const out: MessageRequest[] = [];
    for (const t of await this.pendingThreads()) {
      const r = await this.call<{ items: JsonItem[] }>(
        "GET",
        `/v1/direct/pending/${encodeURIComponent(t.thread_id)}/items`,
      );
      out.push(
        create(MessageRequestSchema, {
          peerAccountId: t.sender.account_id,
          groupId: "",
          envelopes: r.items.map(envelopeOfItem),
          messageCount: t.item_count,
          firstReceivedAtMs: BigInt(t.first_item_at_ms),
        }),
      );
    }
    return out;
  }

  /** Accepts a peer's request (its thread in the requests folder); resolves with its held item count. */
  async acceptMessageRequest(target: RequestTarget): Promise<number> {
    const t = await this.requireRequestThread(target);
    await this.call("POST", `/v1/direct/pending/${encodeURIComponent(t.thread_id)}/accept`);
    return t.item_count;
  }

  /** Declines a peer's request: its held items are deleted; resolves with their count. */
  async declineMessageRequest(target: RequestTarget): Promise<number> {
    const t = await this.requireRequestThread(target);
    const r = await this.call<{ deleted_items: number }>(
      "POST",
      `/v1/direct/pending/${encodeURIComponent(t.thread_id)}/decline`,
    );
    return r.deleted_items;
  }

  /** Blocks an account: through its pending request if it has one (deleting the held items), else by id. */
  async block(peerAccountId: string): Promise<void> {
    const t = (await this.pendingThreads()).find((p) => p.sender.account_id === peerAccountId);
    if (t !== undefined)
      await this.call("POST", `/v1/direct/pending/${encodeURIComponent(t.thread_id)}/block`);
    else await this.call("PUT", `/v1/blocks/${encodeURIComponent(peerAccountId)}`);
  }

  async unblock(peerAccountId: string): Promise<void> {
    await this.call("DELETE", `/v1/blocks/${encodeURIComponent(peerAccountId)}`);
  }

  private async pendingThreads(): Promise<JsonPendingThread[]> {
    return (await this.call<{ threads: JsonPendingThread[] }>("GET", "/v1/direct/pending")).threads;
  }

  private async requireRequestThread(target: RequestTarget): Promise<JsonPendingThread> {
    if ("groupId" in target)
      throw new AppError(
        Code.Unimplemented,
        "REQUESTS_UNSUPPORTED",
        "the Instagram-style app has no group invitations to accept or decline",
      );
    const t = (await this.pendingThreads()).find((p) => p.sender.account_id === target.peerAccountId);
    if (t === undefined)
      throw new AppError(
        Code.NotFound,
        "REQUEST_NOT_FOUND",
        `no pending request from ${target.peerAccountId}`,
      );
    return t;
  }

  async getThirdPartyReachable(): Promise<boolean> {
    const r = await this.call<{ third_party_reachable: boolean }>("GET", "/v1/me/settings/interop");
    return r.third_party_reachable;
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
    if (request.handle === undefined) throw new AppError(Code.InvalidArgument, "INVALID_HANDLE", "no handle");
    const r = await this.callOutcome<JsonUser>(
      "GET",
      `/v1/users/${encodeURIComponent(refOfHandle(request.handle))}`,
      undefined,
      [404],
    );
    return create(ResolveHandleResponseSchema, {
      result: r.ok ? { case: "found", value: accountWithDevices(r.body) } : { case: "notFound", value: {} },
    });
  }

  async getAccount(request: GetAccountRequest): Promise<GetAccountResponse> {
    const r = await this.callOutcome<JsonUser>(
      "GET",
      `/v1/users/${encodeURIComponent(request.accountId)}`,
      undefined,
      [404],
    );
    return create(GetAccountResponseSchema, {
      result: r.ok ? { case: "found", value: accountWithDevices(r.body) } : { case: "notFound", value: {} },
    });
  }

  /** POST /v1/me/reports: a franked report of a received item (docs/safety.md). */
  async reportMessage(request: ReportMessageRequest): Promise<ReportMessageResponse> {
    const sender = request.sender;
    const r = await this.call<{ report_id: string }>("POST", "/v1/me/reports", {
      server_id: request.messageId,
      ...(sender && sender.accountId !== ""
        ? { sender: { account_id: sender.accountId, device_id: sender.deviceId } }
        : {}),
      server_timestamp_ms: Number(request.serverTimestampMs),
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
    const threadId = await this.threadWith(request.destinationAccountId);
    if (threadId === undefined) return { kind: "not_found" };
    const r = await this.callOutcome<{ server_id: string; server_timestamp_ms: number; duplicate: boolean }>(
      "POST",
      `/v1/direct/threads/${threadId}/items`,
      {
        ...this.itemFields(request),
        ciphertexts: request.messages.map((m) => {
          const type = CIPHERTEXT_KINDS[m.type];
          if (type === undefined)
            throw new AppError(
              Code.InvalidArgument,
              "INVALID_ENVELOPE_TYPE",
              `cannot send envelope type ${m.type}`,
            );
          return { device_id: m.deviceId, registration_id: m.registrationId, type, body: b64(m.content) };
        }),
        ...(request.noDeliveryReceipt ? { server_receipt: false } : {}),
      },
      [404, 409],
    );
    if (r.ok)
      return {
        kind: "sent",
        messageId: r.body.server_id,
        serverTimestampMs: r.body.server_timestamp_ms,
        duplicate: r.body.duplicate,
      };
    const p = r.problem;
    if (p.reason === "DEVICES_CHANGED") {
      const accountId = p.account_id ?? request.destinationAccountId;
      if ((p.stale_devices ?? []).length > 0)
        return { kind: "stale", accountId, staleDevices: p.stale_devices ?? [] };
      return {
        kind: "mismatched",
        accountId,
        missingDevices: p.missing_devices ?? [],
        extraDevices: p.extra_devices ?? [],
      };
    }
    if (p.reason === "RECIPIENT_NOT_FOUND") {
      this.threads.delete(request.destinationAccountId);
      return { kind: "not_found" };
    }
    throw r.error;
  }

  /**
   * POST /v1/sealed/items WITHOUT the access token: only the recipient's access key authorises it,
   * so the gateway cannot tell who sends (docs/safety.md).
   */
  async sendSealedMessage(request: SendMessageRequest, accessKey: Uint8Array): Promise<SendOutcome> {
    const r = await this.callOutcome<{ server_id: string; server_timestamp_ms: number; duplicate: boolean }>(
      "POST",
      "/v1/sealed/items",
      {
        recipient: { account_id: request.destinationAccountId },
        access_key: b64(accessKey),
        client_context: request.clientMessageId,
        client_timestamp_ms: Number(request.clientTimestampMs),
        urgent: request.urgent,
        forwarded: request.forwarded,
        ...(request.reportTag.length > 0 ? { report_tag: b64(request.reportTag) } : {}),
        ciphertexts: request.messages.map((m) => {
          if (m.type !== EnvelopeType.SEALED_SENDER)
            throw new AppError(
              Code.InvalidArgument,
              "INVALID_ENVELOPE_TYPE",
              `a sealed send carries only sealed_sender ciphertexts, not type ${m.type}`,
            );
          return {
            device_id: m.deviceId,
            registration_id: m.registrationId,
            type: "sealed_sender",
            body: b64(m.content),
          };
        }),
      },
      [409],
      { auth: false },
    );
    if (r.ok)
      return {
        kind: "sent",
        messageId: r.body.server_id,
        serverTimestampMs: r.body.server_timestamp_ms,
        duplicate: r.body.duplicate,
      };
    const p = r.problem;
    if (p.reason !== "DEVICES_CHANGED") throw r.error;
    const accountId = p.account_id ?? request.destinationAccountId;
    if ((p.stale_devices ?? []).length > 0)
      return { kind: "stale", accountId, staleDevices: p.stale_devices ?? [] };
    return {
      kind: "mismatched",
      accountId,
      missingDevices: p.missing_devices ?? [],
      extraDevices: p.extra_devices ?? [],
    };
  }

  /** GET /v1/me/sender_certificate (also remembers the trust root it comes with). */
  async getSenderCertificate(): Promise<{ certificate: Uint8Array; expiresAtMs: number }> {
    const r = await this.call<{ certificate: string; expires_at_ms: number; trust_root: string }>(
      "GET",
      "/v1/me/sender_certificate",
    );
    this.trustRoot = unb64(r.trust_root);
    return { certificate: unb64(r.certificate), expiresAtMs: r.expires_at_ms };
  }

  async getSealedSenderTrustRoot(): Promise<Uint8Array> {
    if (this.trustRoot === undefined) await this.getSenderCertificate();
    return this.trustRoot ?? new Uint8Array(0);
  }

  /** PUT /v1/me/settings/unidentified_access (`undefined`: disable sealed sender). */
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
    const r = await this.callOutcome<{ server_id: string; server_timestamp_ms: number; duplicate: boolean }>(
      "POST",
      `/v1/direct/threads/${encodeURIComponent(request.groupId)}/items`,
      {
        ...this.itemFields(request),
        body: b64(request.content),
        ...(request.expectedRecipients.length > 0
          ? {
              expected_recipients: request.expectedRecipients.map((e) => ({
                account_id: e.accountId,
                devices: e.devices.map((d) => ({ device_id: d.deviceId, registration_id: d.registrationId })),
              })),
            }
          : {}),
      },
      [403, 404, 409],
    );
    if (r.ok)
      return {
        kind: "sent",
        messageId: r.body.server_id,
        serverTimestampMs: r.body.server_timestamp_ms,
        duplicate: r.body.duplicate,
      };
    if (r.problem.reason === "DEVICES_CHANGED")
      return {
        kind: "mismatched",
        accounts: (r.problem.accounts ?? []).map((a) => ({
          accountId: a.account_id,
          missingDevices: a.missing_devices,
          extraDevices: a.extra_devices,
          staleDevices: a.stale_devices,
        })),
      };
    if (r.problem.reason === "NOT_A_MEMBER" || r.problem.status === 404) return { kind: "not_a_member" };
    throw r.error;
  }

  async createGroup(request: CreateGroupRequest): Promise<Group> {
    const t = await this.call<JsonThread>("POST", "/v1/direct/threads", {
      recipients: request.memberAccountIds,
      thread_type: "group",
    });
    return groupOfThread(t);
  }

  async addGroupMembers(request: AddGroupMembersRequest): Promise<Group> {
    const t = await this.call<JsonThread>(
      "POST",
      `/v1/direct/threads/${encodeURIComponent(request.groupId)}/add_users`,
      {
        recipients: request.accountIds,
      },
    );
    return groupOfThread(t);
  }

  async removeGroupMembers(request: RemoveGroupMembersRequest): Promise<Group> {
    const t = await this.call<JsonThread>(
      "POST",
      `/v1/direct/threads/${encodeURIComponent(request.groupId)}/remove_users`,
      { recipients: request.accountIds },
    );
    return groupOfThread(t);
  }

  async getGroup(request: GetGroupRequest): Promise<Group> {
    return groupOfThread(
      await this.call<JsonThread>("GET", `/v1/direct/threads/${encodeURIComponent(request.groupId)}`),
    );
  }

  receive(options: ReceiveOptions = {}): ReceiveSubscription {
    const queue = new AsyncQueue<ReceiveEvent>();
    const controller = new AbortController();
    this.streams.add(controller);
    const query = options.window === undefined ? "" : `?window=${options.window}`;
    void (async () => {
      const res = await this.fetchAuthorized(
        "GET",
        `/v1/direct/events${query}`,
        undefined,
        controller.signal,
        {
          accept: "text/event-stream",
        },
      );
      if (!res.ok) throw (await problemOf(res)).error;
      if (res.body === null)
        throw new AppError(Code.Unavailable, "STREAM_CLOSED", "the event stream has no body");
      for await (const ev of parseEventStream(res.body)) {
        switch (ev.event) {
          case "item":
          case "receipt":
            queue.push({ kind: "envelope", envelope: envelopeOfItem(JSON.parse(ev.data) as JsonItem) });
            break;
          case "queue_empty":
            queue.push({ kind: "queue_empty" });
            break;
          case "displaced":
            throw new AppError(Code.Aborted, "DISPLACED", "another connection subscribed this device");
          case "error": {
            const p = JSON.parse(ev.data) as { reason?: string; detail?: string };
            throw new AppError(
              p.reason === "DEVICE_REMOVED" ? Code.PermissionDenied : Code.Unavailable,
              p.reason ?? "STREAM_FAILED",
              p.detail ?? "the event stream failed",
            );
          }
          default:
            break;
        }
      }
      throw new AppError(Code.Unavailable, "STREAM_CLOSED", "the event stream ended");
    })()
      .catch((err: unknown) => {
        if (controller.signal.aborted) queue.end(true);
        else queue.fail(asAppError(err));
      })
      .finally(() => this.streams.delete(controller));
    return {
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
      close: () => {
        queue.end(true);
        controller.abort();
      },
    };
  }

  async ack(messageIds: string[]): Promise<void> {
    for (let i = 0; i < messageIds.length; i += MAX_ACK_IDS) {
      await this.call("POST", "/v1/direct/ack", { ids: messageIds.slice(i, i + MAX_ACK_IDS) });
    }
  }

  async close(): Promise<void> {
    for (const c of this.streams) c.abort();
    this.streams.clear();
  }

  // ---- internals ---------------------------------------------------------------------------------

  private itemFields(request: {
    clientMessageId: string;
    clientTimestampMs: bigint;
    ephemeral: boolean;
    urgent: boolean;
    forwarded: boolean;
    reportTag: Uint8Array;
  }) {
    return {
      client_context: request.clientMessageId,
      item_type: request.ephemeral ? "typing" : "message",
      client_timestamp_ms: Number(request.clientTimestampMs),
      urgent: request.urgent,
      forwarded: request.forwarded,
      ...(request.reportTag.length > 0 ? { report_tag: b64(request.reportTag) } : {}),
    };
  }

  /** The one-to-one thread with an account (opened once; opening it is idempotent), or undefined if unknown. */
  private async threadWith(accountId: string): Promise<string | undefined> {
    const cached = this.threads.get(accountId);
    if (cached !== undefined) return cached;
    const r = await this.callOutcome<JsonThread>(
      "POST",
      "/v1/direct/threads",
      { recipients: [accountId] },
      [404],
    );
    if (!r.ok) return undefined;
    this.threads.set(accountId, r.body.thread_id);
    return r.body.thread_id;
  }

  private async token(): Promise<string> {
    const c = this.credentials;
    if (c === undefined)
      throw new AppError(Code.Unauthenticated, "NO_CREDENTIALS", "no device credentials set");
    const known = this.tokens.get(keyOf(c));
    if (known !== undefined) return known;
    const body = await withTimeout(this.timeoutMs, async (signal) => {
      const res = await this.fetchRaw(
        "POST",
        "/v1/auth/token",
        { account_id: c.accountId, device_id: c.deviceId, password: c.password },
        signal,
      );
      if (!res.ok) throw (await problemOf(res)).error;
      return (await res.json()) as { access_token: string };
    });
    this.tokens.set(keyOf(c), body.access_token);
    return body.access_token;
  }

  /** One request; `signal` bounds it (a call's deadline from {@link withTimeout}, or a stream's end). */
  private async fetchRaw(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    try {
      return await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      throw asAppError(err);
    }
  }

  /** A request with the device's token; a rejected token is dropped and the device signs in once more. */
  private async fetchAuthorized(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.token();
      const res = await this.fetchRaw(method, path, body, signal, {
        ...headers,
        authorization: `Bearer ${token}`,
      });
      if (res.status !== 401 || attempt > 0 || this.credentials === undefined) return res;
      this.tokens.delete(keyOf(this.credentials));
      await res.body?.cancel();
    }
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: { auth?: boolean } = {},
  ): Promise<T> {
    // The deadline covers the answer's body too.
    return withTimeout(this.timeoutMs, async (signal) => {
      const res =
        opts.auth === false
          ? await this.fetchRaw(method, path, body, signal)
          : await this.fetchAuthorized(method, path, body, signal);
      if (!res.ok) throw (await problemOf(res)).error;
      if (res.status === 204) return undefined as T;
      return (await res.json()) as T;
    });
  }

  /** Like call, but statuses in `expected` are returned as problems (outcomes) instead of thrown. */
  private async callOutcome<T>(
    method: string,
    path: string,
    body: unknown,
    expected: number[],
    opts: { auth?: boolean } = {},
  ): Promise<{ ok: true; body: T } | { ok: false; problem: Problem; error: AppError }> {
    return withTimeout(this.timeoutMs, async (signal) => {
      const res =
        opts.auth === false
          ? await this.fetchRaw(method, path, body, signal)
          : await this.fetchAuthorized(method, path, body, signal);
      if (res.ok) return { ok: true as const, body: (await res.json()) as T };
      const p = await problemOf(res);
      if (!expected.includes(res.status)) throw p.error;
      return { ok: false as const, ...p };
    });
  }
}

function keyOf(c: { accountId: string; deviceId: number }): string {
  return `${c.accountId}.${c.deviceId}`;
}

async function problemOf(res: Response): Promise<{ problem: Problem; error: AppError }> {
  let problem: Problem = {};
  try {
    problem = (await res.json()) as Problem;
  } catch {
    // Not a problem document (a proxy's error page): the status alone must do.
  }
  const code = (problem.code !== undefined ? CODES[problem.code] : undefined) ?? codeOfStatus(res.status);
  const error = new AppError(code, problem.reason ?? `HTTP_${res.status}`, problem.detail ?? res.statusText, {
    retryAfterMs: res.headers.has("retry-after") ? Number(res.headers.get("retry-after")) * 1000 : undefined,
  });
  return { problem: { ...problem, status: res.status }, error };
}

function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError"))
    return new AppError(Code.DeadlineExceeded, "GATEWAY_TIMEOUT", "the gateway did not answer in time", {
      cause: err,
    });
  return new AppError(Code.Unavailable, "GATEWAY_UNREACHABLE", "the gateway is unreachable", { cause: err });
}
