// The client core: device lifecycle, sessions, encryption, groups and the receive loop.
import { randomUUID } from "node:crypto";
import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  CiphertextMessageType,
  ErrorCode,
  Fingerprint,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  LibSignalErrorBase,
  PreKeySignalMessage,
  ProtocolAddress,
  ContentHint,
  ScannableFingerprint,
  SenderKeyDistributionMessage,
  SignalMessage,
  groupDecrypt,
  groupEncrypt,
  processPreKeyBundle,
  processSenderKeyDistributionMessage,
  PublicKey as SignalPublicKey,
  SenderCertificate,
  UnidentifiedSenderMessageContent,
  sealedSenderDecryptToUsmc,
  sealedSenderEncryptMessage,
  sealedSenderMultiRecipientEncrypt,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import type { Direction, PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import { AppError, Code, isAppError } from "@switchboard/errors";
import {
  AddGroupMembersRequestSchema,
  CreateGroupRequestSchema,
  EnvelopeSchema,
  EnvelopeType,
  GetAccountRequestSchema,
  GetGroupRequestSchema,
  GetPreKeyBundlesRequestSchema,
  GetPreKeyCountRequestSchema,
  OutgoingMessageSchema,
  RecipientDevicesSchema,
  RegisterAccountRequestSchema,
  RegisterDeviceRequestSchema,
  RemoveDeviceRequestSchema,
  RemoveGroupMembersRequestSchema,
  ReportMessageRequestSchema,
  ResolveHandleRequestSchema,
  SendGroupMessageRequestSchema,
  SendMessageRequestSchema,
  SendMultiRecipientMessageRequestSchema,
  UploadKeysRequestSchema,
  AddressSchema,
  content,
} from "@switchboard/proto";
import type {
  AccountWithDevices,
  Device,
  Envelope,
  Group,
  Handle,
  HandleSchema,
  MessageRequest,
  OutgoingMessage,
  RequestsPolicy,
  UploadKeysRequest,
} from "@switchboard/proto";
import { decodeContent, encodeContent } from "./content-codec.js";
import { frankMessage, frankedPlaintext } from "./safety.js";
import { Emitter, type ClientEvents, type EnvelopeMeta, type Listener } from "./events.js";
import { Mutex } from "./internal/mutex.js";
import { reconnectDelayMs } from "./internal/backoff.js";
import {
  bundleFromProto,
  generateIdentityKeyPair,
  generateKyberPreKey,
  generatePassword,
  generatePreKey,
  generateRegistrationId,
  generateSignedPreKey,
  nextKeyId,
  preKeyToProto,
  signedPreKeyToProto,
} from "./keys.js";
import type { ClientStore, ProcessedRef } from "./store/client-store.js";
import {
  fromBase64,
  toBase64,
  type GroupState,
  type LocalDevice,
  type PendingContent,
} from "./store/store-data.js";
import type { GroupSendOutcome, ReceiveSubscription, RequestTarget, Transport } from "./transport.js";

/** The optional Transport methods of message requests. */
type RequestsMethod =
  | "listMessageRequests"
  | "acceptMessageRequest"
  | "declineMessageRequest"
  | "block"
  | "unblock"
  | "setRequestsPolicy";

/** Options of createClient. Durations in milliseconds. */
export interface ClientOptions {
  transport: Transport;
  store: ClientStore;
  /** One-time EC and Kyber pre-keys generated per refill (1..100). Default 100. */
  preKeyBatchSize?: number;
  /** Refill when the server holds fewer one-time keys of a kind than this. Default 20. */
  preKeyRefillThreshold?: number;
  /** Rotate the signed pre-key and last-resort Kyber key after this long. Default 7 days. */
  signedPreKeyRotationMs?: number;
  /** Keep a superseded signed / last-resort key this long for in-flight messages. Default 30 days. */
  supersededKeyRetentionMs?: number;
  /** Attempts per send when device lists change underneath it. Default 5. */
  maxSendAttempts?: number;
  /** Receive window (unacknowledged envelopes in flight). Default: the server's. */
  receiveWindow?: number;
  /**
   * Reconnect back-off of the receive loop: the delay before retry n is uniformly random below
   * min(max, initial * 2^n) (full jitter). Default 500 ms doubling to 30 s.
   */
  reconnectDelayMs?: { initial: number; max: number };
  /** Clock, ms since epoch. */
  now?: () => number;
  /**
   * The sealed-sender trust root public key (33 bytes) to pin. Unset: fetched from the server on
   * first use (trust on first use). See docs/safety.md.
   */
  sealedSenderTrustRoot?: Uint8Array;
}

/** A registered device. */
export interface RegisteredDevice {
  accountId: string;
  deviceId: number;
  registrationId: number;
}

/**
 * What a new device hands to its account's primary device to be linked. Contains the new
 * device's password: transfer it only over a channel the user controls (e.g. a QR code).
 */
export interface DeviceLinkRequest {
  accountId: string;
  registrationId: number;
  password: string;
  deviceName: string;
}

/** A message body to send: text and/or a reaction. */
export interface OutgoingData {
  text?: string;
  reaction?: MessageInitShape<typeof content.ReactionSchema>;
  /** Mark the message as forwarded. */
  forwarded?: boolean;
  /**
   * Whether the server sends a delivery receipt (a `deliveryReceipt` event) when a recipient device
   * acknowledges the message; default true. Apps that send their own end-to-end receipts turn it
   * off and save the server a queued row, a push and an ack per message. One-to-one sends only.
   */
  serverReceipt?: boolean;
  /**
   * Send it sealed: the server learns neither this account nor device. `accessKey` is the
   * recipient's unidentified access key (see `deriveAccessKey`).
   */
  sealedSender?: { accessKey: Uint8Array };
}

/**
 * Sealed sender for a group send: the unidentified access key of every other member account (the
 * app learns them from the members' profile keys, see `deriveAccessKey`), or "unrestricted" for
 * members that accept sealed messages from anyone. The server checks their XOR (docs/safety.md).
 */
export interface GroupSealedSender {
  accessKeys: Record<string, Uint8Array | "unrestricted">;
}

/** A group message body to send; `sealedSender` hides this device from the server. */
export type OutgoingGroupData = Omit<OutgoingData, "sealedSender"> & { sealedSender?: GroupSealedSender };

/** The result of a one-to-one send. An unknown recipient is an outcome, not an error. */
export type SendResult =
  | {
      kind: "sent";
      messageId: string;
      serverTimestampMs: number;
      clientMessageId: string;
      timestampMs: number;
    }
  | { kind: "recipient_not_found" };

/** The result of a group send. */
export type GroupSendResult =
  | {
      kind: "sent";
      messageId: string;
      serverTimestampMs: number;
      clientMessageId: string;
      timestampMs: number;
    }
  | { kind: "not_a_member" };

/** What key maintenance did. */
export interface KeyMaintenanceReport {
  uploadedPreKeys: number;
  uploadedKyberPreKeys: number;
  rotatedSignedPreKey: boolean;
}

/** A safety number for one peer device: 60 digits to compare, and bytes for a QR code. */
export interface SafetyNumber {
  displayable: string;
  scannable: Uint8Array;
}

/** A pending message request with its held messages decrypted (`previewMessageRequests`). */
export interface MessageRequestPreview {
  /** The requesting account (the sender, or the inviter of a group invitation). */
  peerAccountId: string;
  /** The peer's app-native handle, when the server named it. */
  peerHandle: Handle | undefined;
  /** Set for a group invitation (then there are no messages). */
  groupId: string | undefined;
  /** Messages of the peer held for this device in all (the server lists at most 50). */
  messageCount: number;
  /** When the first held message (or the invitation) arrived, ms since epoch. */
  firstReceivedAtMs: number;
  /**
   * The held chat messages, oldest first, decrypted; each can be passed to `client.report`.
   * Other held contents (receipts, session resets) are kept but not listed.
   */
  messages: { meta: EnvelopeMeta; message: content.DataMessage }[];
  /** Held envelopes that could not be decrypted (the receive loop tries them again once accepted). */
  failed: { meta: EnvelopeMeta; error: unknown }[];
}

/** What `reportMessageRequest` did. */
export interface MessageRequestReport {
  /** The franked messages reported now: server message id and report id. */
  reported: { messageId: string; reportId: string }[];
  /** Server message ids of messages that had been reported before (ALREADY_REPORTED). */
  alreadyReported: string[];
  /** Held chat messages skipped because they carry no franking data (an older client's). */
  unfranked: number;
  /** Held envelopes skipped because they could not be decrypted. */
  undecryptable: number;
  /** Whether the peer was blocked (its held messages deleted, later ones dropped). */
  blocked: boolean;
}

interface SendOptions {
  clientMessageId: string;
  timestampMs: number;
  ephemeral?: boolean;
  urgent?: boolean;
  forwarded?: boolean;
  /** No server delivery receipt for the message (SendMessageRequest.no_delivery_receipt). */
  noDeliveryReceipt?: boolean;
  /** Devices the caller knows the account has (e.g. from a group), besides those with sessions. */
  expectedDevices?: number[];
  /** Message franking commitment (Envelope.report_tag). */
  reportTag?: Uint8Array;
  /** Sealed sender with the recipient's access key. */
  sealed?: { accessKey: Uint8Array };
  /** Sealed group send with the members' access keys (multi-recipient sealed sender). */
  sealedGroup?: GroupSealedSender;
}

type AccountSendResult =
  | {
      kind: "sent";
      messageId: string;
      serverTimestampMs: number;
      devices: { deviceId: number; registrationId: number }[];
    }
  | { kind: "not_found" }
  /** A sync to one's own account when this is its only device. */
  | { kind: "no_devices" };

const DAY_MS = 86_400_000;
const FINGERPRINT_ITERATIONS = 5200;
const FINGERPRINT_VERSION = 2;
const MAX_KEYS_PER_UPLOAD = 100;
/** One-time keys of a kind the delivery service stores per device. */
const MAX_STORED_ONE_TIME_KEYS = 1000;
/** A device whose messages fail to decrypt gets a session reset at most this often. */
const SESSION_RESET_INTERVAL_MS = 60_000;
const PREKEY_CIPHERTEXT_TYPE: number = CiphertextMessageType.PreKey;
const SENDER_KEY_CIPHERTEXT_TYPE: number = CiphertextMessageType.SenderKey;

function copyBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out;
}

/** Unidentified access keys are 16 bytes. */
const SEALED_ACCESS_KEY_BYTES = 16;
/** The key presented for a member with unrestricted sealed-sender access (any key is accepted). */
const ZERO_ACCESS_KEY = new Uint8Array(SEALED_ACCESS_KEY_BYTES);

/**
 * A member's access key for a sealed group send (ZERO_ACCESS_KEY for "unrestricted"). Fails
 * INVALID_ARGUMENT (MISSING_ACCESS_KEY, INVALID_ACCESS_KEY) for a missing or malformed key.
 */
function memberAccessKey(sealed: GroupSealedSender, accountId: string): Uint8Array {
  const key = sealed.accessKeys[accountId];
  if (key === undefined)
    throw new AppError(
      Code.InvalidArgument,
      "MISSING_ACCESS_KEY",
      `no sealed-sender access key for group member ${accountId}`,
    );
  if (key === "unrestricted") return ZERO_ACCESS_KEY;
  if (key.byteLength !== SEALED_ACCESS_KEY_BYTES)
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_ACCESS_KEY",
      `the access key of group member ${accountId} must be ${SEALED_ACCESS_KEY_BYTES} bytes`,
    );
  return key;
}

function addressOf(accountId: string, deviceId: number): ProtocolAddress {
  return ProtocolAddress.new(accountId, deviceId);
}

function metaOf(envelope: Envelope): EnvelopeMeta {
  return {
    sealedSender: envelope.type === EnvelopeType.SEALED_SENDER,
    reportTag: envelope.reportTag,
    serverFrankingTag: envelope.serverFrankingTag,
    id: envelope.id,
    sender: { accountId: envelope.source?.accountId ?? "", deviceId: envelope.source?.deviceId ?? 0 },
    clientMessageId: envelope.clientMessageId,
    serverTimestampMs: Number(envelope.serverTimestampMs),
    clientTimestampMs: Number(envelope.clientTimestampMs),
    groupId: envelope.groupId === "" ? undefined : envelope.groupId,
    ephemeral: envelope.ephemeral,
    urgent: envelope.urgent,
    forwarded: envelope.forwarded,
    sourceApp: envelope.sourceApp,
    sourceProviderId: envelope.sourceProviderId,
  };
}

function processedRefOf(envelope: Envelope): ProcessedRef {
  const source = envelope.source;
  // Server receipts echo the acknowledged message's client id, so only their server id is unique.
  if (
    source === undefined ||
    source.accountId === "" ||
    envelope.clientMessageId === "" ||
    envelope.type === EnvelopeType.SERVER_DELIVERY_RECEIPT
  ) {
    return { serverId: envelope.id };
  }
  return {
    serverId: envelope.id,
    senderClientId: `${source.accountId}.${source.deviceId}|${envelope.clientMessageId}`,
  };
}

/** Whether a received chat message carries everything a franked report needs. */
function isFranked(event: { meta: EnvelopeMeta; message: content.DataMessage }): boolean {
  return (
    event.message.frankingKey.byteLength > 0 &&
    event.meta.reportTag.byteLength > 0 &&
    event.meta.serverFrankingTag.byteLength > 0
  );
}

/** Reports replaced identity keys to the client while delegating to the store. */
class ObservedIdentityStore extends IdentityKeyStore {
  constructor(
    private readonly inner: IdentityKeyStore,
    private readonly onReplaced: (address: ProtocolAddress) => void,
  ) {
    super();
  }
  getIdentityKey(): Promise<PrivateKey> {
    return this.inner.getIdentityKey();
  }
  override getIdentityKeyPair(): Promise<IdentityKeyPair> {
    return this.inner.getIdentityKeyPair();
  }
  getLocalRegistrationId(): Promise<number> {
    return this.inner.getLocalRegistrationId();
  }
  async saveIdentity(address: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const change = await this.inner.saveIdentity(address, key);
    if (change === IdentityChange.ReplacedExisting) this.onReplaced(address);
    return change;
  }
  isTrustedIdentity(address: ProtocolAddress, key: PublicKey, direction: Direction): Promise<boolean> {
    return this.inner.isTrustedIdentity(address, key, direction);
  }
  getIdentity(address: ProtocolAddress): Promise<PublicKey | null> {
    return this.inner.getIdentity(address);
  }
}

/**
 * Opens a client over a transport and a store, restoring a registered device's credentials from
 * the store. The caller keeps ownership of both: `client.close()` stops the receive loop and
 * flushes the store; close the transport and store afterwards.
 */
export async function createClient(options: ClientOptions): Promise<SwitchboardClient> {
  const client = new SwitchboardClient(options);
  await client.load();
  return client;
}

/**
 * One device of one account, end to end encrypted with libsignal (PQXDH sessions, Double
 * Ratchet, sender keys). All crypto and store operations are serialised; listeners run outside
 * that lock, so they may call back into the client.
 */
export class SwitchboardClient {
  private readonly transport: Transport;
  private readonly store: ClientStore;
  private readonly identity: ObservedIdentityStore;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly mutex = new Mutex();
  private readonly now: () => number;
  private readonly batchSize: number;
  private readonly refillThreshold: number;
  private readonly rotationMs: number;
  private readonly retentionMs: number;
  private readonly maxSendAttempts: number;
  private readonly receiveWindow: number | undefined;
  private readonly reconnect: { initial: number; max: number };
  private local: LocalDevice | undefined;
  private queuedEvents: (() => Promise<void>)[] = [];
  private running = false;
  private live = false;
  private keysDirty = false;
  private loop: Promise<void> | undefined;
  private subscription: { close(): void } | undefined;
  private wake: (() => void) | undefined;
  /** When a session reset last went to each peer device (`account.device`), ms since epoch. */
  private readonly sessionResets = new Map<string, number>();
  /** Sealed sender: the pinned or fetched trust root, and this device's current certificate. */
  private sealedTrustRoot: SignalPublicKey | undefined;
  private senderCertificate: { certificate: SenderCertificate; expiresAtMs: number } | undefined;

  /** Use createClient. */
  constructor(options: ClientOptions) {
    this.transport = options.transport;
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.batchSize = Math.min(Math.max(options.preKeyBatchSize ?? 100, 1), MAX_KEYS_PER_UPLOAD);
    this.refillThreshold = options.preKeyRefillThreshold ?? 20;
    this.rotationMs = options.signedPreKeyRotationMs ?? 7 * DAY_MS;
    this.retentionMs = options.supersededKeyRetentionMs ?? 30 * DAY_MS;
    this.maxSendAttempts = options.maxSendAttempts ?? 5;
    this.receiveWindow = options.receiveWindow;
    this.reconnect = options.reconnectDelayMs ?? { initial: 500, max: 30_000 };
    if (options.sealedSenderTrustRoot !== undefined)
      this.sealedTrustRoot = SignalPublicKey.deserialize(copyBytes(options.sealedSenderTrustRoot));
    this.identity = new ObservedIdentityStore(this.store.identity, (address) => {
      const accountId = address.name();
      const deviceId = address.deviceId();
      this.queueEvent(async () => {
        const safety = await this.safetyNumber(accountId, deviceId);
        await this.emitter.emit("identityChanged", {
          accountId,
          deviceId,
          safetyNumber: safety?.displayable ?? "",
        });
      });
    });
  }

  /** @internal Loads the local device from the store; called by createClient. */
  async load(): Promise<void> {
    this.local = await this.store.state.getLocalDevice();
    const { accountId, deviceId, password } = this.local ?? {};
    if (accountId !== undefined && deviceId !== undefined && password !== undefined) {
      this.transport.setDeviceCredentials({ accountId, deviceId, password });
    }
  }

  /** This device's address, or undefined before registration. */
  get address(): { accountId: string; deviceId: number } | undefined {
    const { accountId, deviceId } = this.local ?? {};
    return accountId === undefined || deviceId === undefined ? undefined : { accountId, deviceId };
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    return this.emitter.on(event, listener);
  }

  // ---- registration -------------------------------------------------------------------------

  /**
   * Registers a new account with this device as its primary device, then uploads its keys.
   * `appToken` is the app credential (in production a gateway registers accounts). Fails
   * ALREADY_EXISTS (ALREADY_REGISTERED) if this store already holds a registered device, and
   * with the server's errors (ALREADY_EXISTS HANDLE_TAKEN, ...).
   */
  async registerAccount(options: {
    handle: MessageInitShape<typeof HandleSchema>;
    appToken: string;
    deviceName?: string;
    /** The app's age signal: the account belongs to a minor (docs/safety.md). */
    minor?: boolean;
    /** How messages from strangers arrive (default: marked for adults, held for minors). */
    requestsPolicy?: RequestsPolicy;
  }): Promise<RegisteredDevice> {
    return this.exclusive(async () => {
      const local = await this.ensureLocalIdentity();
      const response = await this.transport.registerAccount(
        create(RegisterAccountRequestSchema, {
          handle: options.handle,
          registrationId: local.registrationId,
          password: local.password,
          deviceName: options.deviceName ?? "",
          minor: options.minor ?? false,
          requestsPolicy: options.requestsPolicy ?? 0,
        }),
        { appToken: options.appToken },
      );
      const accountId = response.account?.id;
      if (accountId === undefined || accountId === "") {
        throw new AppError(Code.Internal, "INVALID_RESPONSE", "registration returned no account id");
      }
      return this.completeRegistrationLocked(accountId, response.device?.deviceId ?? 1);
    });
  }

  /**
   * Registers this device as a further device of `accountId` with an app credential, then
   * uploads its keys. Without an app credential use the link flow
   * (createDeviceLinkRequest → approveDeviceLink on the primary → completeDeviceLink).
   */
  async registerDevice(options: {
    accountId: string;
    appToken: string;
    deviceName?: string;
  }): Promise<RegisteredDevice> {
    return this.exclusive(async () => {
      const local = await this.ensureLocalIdentity();
      const response = await this.transport.registerDevice(
        create(RegisterDeviceRequestSchema, {
          accountId: options.accountId,
          registrationId: local.registrationId,
          password: local.password,
          deviceName: options.deviceName ?? "",
        }),
        { appToken: options.appToken },
      );
      return this.completeRegistrationLocked(options.accountId, this.deviceIdOf(response.device));
    });
  }

  /** Step 1 of linking (on the new device): creates its identity and the request to transfer. */
  async createDeviceLinkRequest(options: {
    accountId: string;
    deviceName?: string;
  }): Promise<DeviceLinkRequest> {
    return this.exclusive(async () => {
      const local = await this.ensureLocalIdentity();
      return {
        accountId: options.accountId,
        registrationId: local.registrationId,
        password: local.password,
        deviceName: options.deviceName ?? "",
      };
    });
  }

  /**
   * Step 2 of linking (on the primary device): registers the new device with this device's
   * credential and returns it (with its assigned device id) for completeDeviceLink.
   */
  async approveDeviceLink(request: DeviceLinkRequest): Promise<Device> {
    return this.exclusive(async () => {
      const self = this.self();
      if (request.accountId !== self.accountId) {
        throw new AppError(
          Code.PermissionDenied,
          "ACCOUNT_MISMATCH",
          "a device can only link devices to its own account",
        );
      }
      const response = await this.transport.registerDevice(
        create(RegisterDeviceRequestSchema, {
          accountId: request.accountId,
          registrationId: request.registrationId,
          password: request.password,
          deviceName: request.deviceName,
        }),
      );
      const deviceId = this.deviceIdOf(response.device);
      await this.store.state.setOwnDeviceIds([...(await this.store.state.getOwnDeviceIds()), deviceId]);
      await this.store.flush();
      return response.device as Device;
    });
  }

  /** Step 3 of linking (on the new device): adopts the assigned device id and uploads keys. */
  async completeDeviceLink(options: { accountId: string; deviceId: number }): Promise<RegisteredDevice> {
    return this.exclusive(async () => {
      if (this.local === undefined) {
        throw new AppError(Code.FailedPrecondition, "NO_LINK_REQUEST", "call createDeviceLinkRequest first");
      }
      return this.completeRegistrationLocked(options.accountId, options.deviceId);
    });
  }

  /**
   * Removes a linked device of this account (from the primary device) and forgets its session.
   * Fails FAILED_PRECONDITION (PRIMARY_DEVICE) for device 1, as the server does.
   */
  async unlinkDevice(deviceId: number): Promise<void> {
    await this.exclusive(async () => {
      const self = this.self();
      await this.transport.removeDevice(
        create(RemoveDeviceRequestSchema, { accountId: self.accountId, deviceId }),
      );
      await this.store.session.deleteSession(addressOf(self.accountId, deviceId));
      await this.store.state.setOwnDeviceIds(
        (await this.store.state.getOwnDeviceIds()).filter((d) => d !== deviceId),
      );
      await this.store.flush();
    });
  }

  // ---- directory ----------------------------------------------------------------------------

  /** Resolves an app-native handle; undefined when no account has it. */
  async resolveHandle(
    handle: MessageInitShape<typeof HandleSchema>,
  ): Promise<AccountWithDevices | undefined> {
    const response = await this.transport.resolveHandle(create(ResolveHandleRequestSchema, { handle }));
    return response.result.case === "found" ? response.result.value : undefined;
  }

  /** Looks up an account with its devices; undefined when unknown. */
  async getAccount(accountId: string): Promise<AccountWithDevices | undefined> {
    const response = await this.transport.getAccount(create(GetAccountRequestSchema, { accountId }));
    return response.result.case === "found" ? response.result.value : undefined;
  }

  /**
   * Opts this account in to (or out of) being reachable from users of third-party providers
   * (off by default; docs/interop.md). Returns the stored setting. Fails UNIMPLEMENTED when the
   * transport has no such setting.
   */
  async setThirdPartyReachable(reachable: boolean): Promise<boolean> {
    if (!this.transport.setThirdPartyReachable)
      throw new AppError(Code.Unimplemented, "NOT_SUPPORTED", "this transport has no third-party setting");
    return this.transport.setThirdPartyReachable(reachable);
  }

  /**
   * This device's pending message requests (docs/safety.md): per sender, the held envelopes (not
   * decrypted here; they arrive again through the receive loop once accepted) and held group
   * invitations. `previewMessageRequests` decrypts them. Fails UNIMPLEMENTED
   * (REQUESTS_UNSUPPORTED) when the transport lacks requests.
   */
  async listMessageRequests(): Promise<MessageRequest[]> {
    return this.requestsApi("listMessageRequests")();
  }

  /** Accepts a peer's request (its held messages then arrive in order) or a group invitation. */
  async acceptMessageRequest(target: RequestTarget): Promise<{ released: number }> {
    return { released: await this.requestsApi("acceptMessageRequest")(target) };
  }

  /** Declines a peer's request (held messages deleted, no receipt) or a group invitation. */
  async declineMessageRequest(target: RequestTarget): Promise<{ deleted: number }> {
    const deleted = await this.requestsApi("declineMessageRequest")(target);
    if ("peerAccountId" in target) await this.forgetPreviews(target.peerAccountId);
    return { deleted };
  }

  /** Blocks an account: its requests are deleted and its later messages dropped (it cannot tell). */
  async block(peerAccountId: string): Promise<void> {
    await this.requestsApi("block")(peerAccountId);
    await this.forgetPreviews(peerAccountId);
  }

  /** Unblocks an account (its next message is a request again). */
  async unblock(peerAccountId: string): Promise<void> {
    await this.requestsApi("unblock")(peerAccountId);
  }

  /** Sets how messages from strangers arrive for this account (HOLD or DELIVER_MARKED). */
  async setRequestsPolicy(policy: RequestsPolicy): Promise<void> {
    await this.requestsApi("setRequestsPolicy")(policy);
  }

  /**
   * This device's pending message requests with decrypted previews (docs/safety.md). Each held
   * envelope is decrypted once and its plaintext kept in the store, so when the request is
   * accepted the receive loop emits the kept message (exactly once, acknowledged as usual)
   * instead of decrypting again; previews are not emitted as events before that. Calling it again
   * reuses the kept previews. Held envelopes that cannot be decrypted are listed under `failed`
   * and left for the receive loop. Fails like listMessageRequests.
   */
  async previewMessageRequests(): Promise<MessageRequestPreview[]> {
    const requests = await this.requestsApi("listMessageRequests")();
    const out: MessageRequestPreview[] = [];
    for (const request of requests) {
      const preview: MessageRequestPreview = {
        peerAccountId: request.peerAccountId,
        peerHandle: request.peerHandle,
        groupId: request.groupId === "" ? undefined : request.groupId,
        messageCount: request.messageCount,
        firstReceivedAtMs: Number(request.firstReceivedAtMs),
        messages: [],
        failed: [],
      };
      for (const envelope of request.envelopes) {
        const meta = metaOf(envelope);
        const r = await this.exclusive(() => this.previewLocked(envelope));
        if (r.kind === "failed") preview.failed.push({ meta, error: r.error });
        else if (r.kind === "content" && r.content.body.case === "data")
          preview.messages.push({ meta, message: r.content.body.value });
      }
      out.push(preview);
    }
    return out;
  }

  /**
   * Reports a stranger's held messages and (unless `block` is false) blocks the stranger, in one
   * call: previews the peer's held envelopes (see previewMessageRequests), reports every franked
   * chat message among them (as `report` does; one already reported counts as reported), then
   * blocks the peer, which deletes its held messages and drops its later ones. Unfranked messages
   * and undecryptable envelopes are skipped and counted. Nothing is blocked when a report fails
   * (the error propagates, so the call can be retried). Fails NOT_FOUND (REQUEST_NOT_FOUND) when
   * the peer has no pending request, UNIMPLEMENTED (REQUESTS_UNSUPPORTED, REPORTS_UNSUPPORTED)
   * when the transport lacks requests or reports, and with the server's reasons.
   */
  async reportMessageRequest(options: {
    peerAccountId: string;
    /** Free text for the moderators (the server limits its length). */
    reason?: string;
    /** Block the peer after reporting. Default true. */
    block?: boolean;
  }): Promise<MessageRequestReport> {
    const { peerAccountId, reason = "", block = true } = options;
    if (peerAccountId === "")
      throw new AppError(Code.InvalidArgument, "PEER_REQUIRED", "peerAccountId is required");
    const previews = (await this.previewMessageRequests()).filter((p) => p.peerAccountId === peerAccountId);
    if (previews.length === 0)
      throw new AppError(
        Code.NotFound,
        "REQUEST_NOT_FOUND",
        `no pending message request from ${peerAccountId}`,
      );
    const result: MessageRequestReport = {
      reported: [],
      alreadyReported: [],
      unfranked: 0,
      undecryptable: 0,
      blocked: false,
    };
    for (const preview of previews) {
      result.undecryptable += preview.failed.length;
      for (const held of preview.messages) {
        if (!isFranked(held)) {
          result.unfranked++;
          continue;
        }
        try {
          const { reportId } = await this.report(held, reason);
          result.reported.push({ messageId: held.meta.id, reportId });
        } catch (error) {
          if (!(isAppError(error) && error.reason === "ALREADY_REPORTED")) throw error;
          result.alreadyReported.push(held.meta.id);
        }
      }
    }
    if (block) {
      await this.block(peerAccountId);
      result.blocked = true;
    }
    return result;
  }

  /** Forgets the kept previews of a peer's held envelopes (declined or blocked: never delivered). */
  private async forgetPreviews(peerAccountId: string): Promise<void> {
    await this.exclusive(async () => {
      const state = this.store.state;
      let removed = false;
      for (const held of await state.listHeld()) {
        const envelope = fromBinary(EnvelopeSchema, fromBase64(held.envelope));
        if (envelope.source?.accountId !== peerAccountId) continue;
        await state.removeHeld(held.serverId);
        removed = true;
      }
      if (removed) await this.store.flush();
    });
  }

  private requestsApi<K extends RequestsMethod>(name: K): NonNullable<Transport[K]> {
    const fn = this.transport[name];
    if (fn === undefined)
      throw new AppError(
        Code.Unimplemented,
        "REQUESTS_UNSUPPORTED",
        "this transport does not support message requests",
      );
    return fn.bind(this.transport) as NonNullable<Transport[K]>;
  }

  /** Whether users of third-party providers can reach this account (see setThirdPartyReachable). */
  async getThirdPartyReachable(): Promise<boolean> {
    if (!this.transport.getThirdPartyReachable)
      throw new AppError(Code.Unimplemented, "NOT_SUPPORTED", "this transport has no third-party setting");
    return this.transport.getThirdPartyReachable();
  }

  /** Re-reads this account's device list, so sync copies reach newly linked devices. */
  async refreshOwnDevices(): Promise<number[]> {
    return this.exclusive(() => this.refreshOwnDevicesLocked());
  }

  // ---- keys ---------------------------------------------------------------------------------

  /**
   * Refills one-time EC and Kyber pre-keys when the server holds fewer than the threshold and
   * rotates the signed pre-key (with the last-resort Kyber key) when due, then deletes
   * superseded keys older than the retention. Runs automatically when the backlog is drained
   * and after each pre-key message; call it on a timer for long-lived clients.
   */
  async maintainKeys(options: { forceRotation?: boolean } = {}): Promise<KeyMaintenanceReport> {
    return this.exclusive(() => this.maintainKeysLocked(options.forceRotation ?? false));
  }

  /** Rotates the signed pre-key and last-resort Kyber key now (and refills if needed). */
  async rotateSignedPreKey(): Promise<KeyMaintenanceReport> {
    return this.maintainKeys({ forceRotation: true });
  }

  /**
   * Replaces this device's identity key pair, e.g. after a suspected compromise. Publishes the
   * new identity key with a new signed pre-key and last-resort Kyber key (and re-signs the
   * one-time Kyber keys the server may still hand out), forgets every session, starts a new
   * sender key for every group, then resets the session with every account it had one with:
   * their devices meet the new key at once and report `identityChanged`. Messages they encrypted
   * for the old key before reading the reset are lost (`decryptionFailed` here). The device keeps
   * its address, registration id and password. Fails with transport errors (call it again);
   * a peer that cannot be reached is reported as an `error` event.
   */
  async resetIdentity(): Promise<void> {
    await this.exclusive(async () => {
      const local = this.local;
      this.self();
      if (local === undefined)
        throw new AppError(Code.FailedPrecondition, "NOT_INITIALIZED", "no local identity");
      // Sessions carry the old identity key: a peer would keep using them and never see the new one.
      const peers = await this.store.session.getAccountIds();
      for (const accountId of peers) {
        for (const deviceId of await this.store.session.getDeviceIds(accountId)) {
          await this.store.session.deleteSession(addressOf(accountId, deviceId));
        }
      }
      for (const groupId of await this.store.state.listGroupIds()) {
        const group = await this.store.state.getGroup(groupId);
        if (group !== undefined) {
          await this.store.state.setGroup(groupId, {
            ...group,
            distributionId: randomUUID(),
            distributedTo: {},
          });
        }
      }
      const identity = generateIdentityKeyPair();
      const uploads = await this.replaceSignedKeysLocked(identity);
      const next: LocalDevice = { ...local, identityKeyPair: toBase64(identity.serialize()) };
      await this.store.state.setLocalDevice(next);
      this.local = next;
      // Private halves must be durable before the public halves are handed out.
      await this.store.flush();
      for (const upload of uploads) await this.transport.uploadKeys(upload);
      for (const accountId of peers) {
        try {
          await this.sendSessionResetLocked(accountId, []);
        } catch (error) {
          this.queueEvent(() => this.emitter.emit("error", { error, context: "session reset" }));
        }
      }
    });
  }

  /**
   * The safety number between this device and a peer device whose identity key is known
   * (undefined otherwise). Both sides compute the same number; compare it out of band.
   */
  async safetyNumber(accountId: string, deviceId: number): Promise<SafetyNumber | undefined> {
    const fingerprint = await this.fingerprint(accountId, deviceId);
    if (fingerprint === undefined) return undefined;
    return {
      displayable: fingerprint.displayableFingerprint().toString(),
      scannable: fingerprint.scannableFingerprint().toBuffer(),
    };
  }

  /** True when `scanned` (the peer's scannable safety number) matches ours for that device. */
  async verifySafetyNumber(accountId: string, deviceId: number, scanned: Uint8Array): Promise<boolean> {
    const fingerprint = await this.fingerprint(accountId, deviceId);
    if (fingerprint === undefined) return false;
    try {
      return fingerprint.scannableFingerprint().compare(ScannableFingerprint._fromBuffer(copyBytes(scanned)));
    } catch {
      // A malformed or different-version scan is simply not a match.
      return false;
    }
  }

  // ---- sending ------------------------------------------------------------------------------

  /**
   * Sends a chat message to every device of `accountId` and a SyncMessage copy to this
   * account's other devices. Sessions are created from pre-key bundles as needed; device-list
   * mismatches and stale devices are repaired and the send retried. Fails ABORTED
   * (DEVICE_LIST_UNSTABLE) after too many attempts and with transport errors.
   */
  async sendMessage(accountId: string, data: OutgoingData): Promise<SendResult> {
    const timestampMs = this.now();
    const clientMessageId = randomUUID();
    const message = create(content.DataMessageSchema, {
      text: data.text ?? "",
      timestampMs: BigInt(timestampMs),
      clientMessageId,
      reaction: data.reaction,
    });
    // Franking: the key travels inside the encrypted content, the commitment in the envelope.
    const reportTag = frankMessage(message);
    const result = await this.exclusive(async () => {
      const plaintext = encodeContent({ body: { case: "data", value: message } });
      const sent = await this.sendToAccountLocked(accountId, plaintext, {
        clientMessageId,
        timestampMs,
        urgent: true,
        forwarded: data.forwarded ?? false,
        noDeliveryReceipt: data.serverReceipt === false,
        reportTag,
        sealed: data.sealedSender,
      });
      if (sent.kind !== "sent") return sent;
      if (accountId !== this.self().accountId) {
        const sync = encodeContent({
          body: { case: "sync", value: { destinationAccountId: accountId, sent: message } },
        });
        try {
          await this.sendToAccountLocked(this.self().accountId, sync, {
            clientMessageId: `${clientMessageId}:sync`,
            timestampMs,
          });
        } catch (error) {
          // The message itself is delivered; a failed copy must not make the caller resend it.
          this.queueEvent(() => this.emitter.emit("error", { error, context: "sync copy" }));
        }
      }
      return sent;
    });
    if (result.kind === "not_found") return { kind: "recipient_not_found" };
    if (result.kind === "no_devices")
      return { kind: "sent", messageId: "", serverTimestampMs: timestampMs, clientMessageId, timestampMs };
    return {
      kind: "sent",
      messageId: result.messageId,
      serverTimestampMs: result.serverTimestampMs,
      clientMessageId,
      timestampMs,
    };
  }

  /**
   * Reports a received chat message to the server for abuse review (message franking). Reveals
   * the message's plaintext to the server with proof that the sender sent it: the server checks
   * the franking key against the commitment and its own tag, and records the report. Fails
   * FAILED_PRECONDITION (NOT_FRANKED) for a message that carried no franking data (an older
   * client), and with the server's reason (COMMITMENT_MISMATCH, FRANKING_TAG_MISMATCH, ...).
   */
  async report(
    event: { meta: EnvelopeMeta; message: content.DataMessage },
    reason = "",
  ): Promise<{ reportId: string }> {
    const { meta, message } = event;
    if (!isFranked(event))
      throw new AppError(
        Code.FailedPrecondition,
        "NOT_FRANKED",
        "the message carries no franking data to report with",
      );
    if (this.transport.reportMessage === undefined)
      throw new AppError(
        Code.Unimplemented,
        "REPORTS_UNSUPPORTED",
        "this transport does not support reports",
      );
    const r = await this.transport.reportMessage(
      create(ReportMessageRequestSchema, {
        messageId: meta.id,
        sender: meta.sealedSender ? undefined : meta.sender,
        serverTimestampMs: BigInt(meta.serverTimestampMs),
        plaintext: frankedPlaintext(message),
        frankingKey: message.frankingKey,
        reportTag: meta.reportTag,
        serverFrankingTag: meta.serverFrankingTag,
        senderCertificate: meta.senderCertificate ?? new Uint8Array(0),
        reason,
      }),
    );
    return { reportId: r.reportId };
  }

  /**
   * Sets who may send this account sealed-sender messages: holders of `accessKey` (derive it
   * from a profile key with `deriveAccessKey`), anyone (`unrestricted`), or nobody (`undefined`).
   * Rotating the key blocks every sender that only knew the old one.
   */
  async setSealedSenderAccess(
    access: { accessKey?: Uint8Array; unrestricted?: boolean } | undefined,
  ): Promise<void> {
    if (this.transport.setUnidentifiedAccess === undefined)
      throw new AppError(
        Code.Unimplemented,
        "SEALED_SENDER_UNSUPPORTED",
        "this transport does not support sealed sender",
      );
    await this.transport.setUnidentifiedAccess(access);
  }

  /** Sends an end-to-end delivery or read receipt for messages of `accountId` (by sender timestamp). */
  async sendReceipt(
    accountId: string,
    type: content.ReceiptType,
    timestampsMs: (number | bigint)[],
  ): Promise<SendResult> {
    const timestampMs = this.now();
    const clientMessageId = randomUUID();
    const plaintext = encodeContent({
      body: { case: "receipt", value: { type, timestampsMs: timestampsMs.map((t) => BigInt(t)) } },
    });
    const result = await this.exclusive(() =>
      this.sendToAccountLocked(accountId, plaintext, { clientMessageId, timestampMs }),
    );
    if (result.kind === "not_found") return { kind: "recipient_not_found" };
    if (result.kind === "no_devices")
      return { kind: "sent", messageId: "", serverTimestampMs: timestampMs, clientMessageId, timestampMs };
    return {
      kind: "sent",
      messageId: result.messageId,
      serverTimestampMs: result.serverTimestampMs,
      clientMessageId,
      timestampMs,
    };
  }

  /**
   * Sends a typing indicator as an ephemeral message (only connected devices get it, nothing is
   * stored). `sealedSender` hides this device from the server: the recipient's access key for an
   * account, the members' access keys for a group (GroupSealedSender).
   */
  async sendTyping(
    to: { accountId: string } | { groupId: string },
    action: content.TypingAction,
    options: { sealedSender?: { accessKey: Uint8Array } | GroupSealedSender } = {},
  ): Promise<void> {
    const sealed = options.sealedSender;
    if (sealed !== undefined && "groupId" in to !== "accessKeys" in sealed)
      throw new AppError(
        Code.InvalidArgument,
        "INVALID_SEALED_SENDER",
        "sealed typing takes `accessKey` for an account and `accessKeys` for a group",
      );
    const timestampMs = this.now();
    const clientMessageId = randomUUID();
    if ("groupId" in to) {
      await this.exclusive(() =>
        this.sendGroupLocked(
          to.groupId,
          () =>
            encodeContent({
              body: {
                case: "typing",
                value: { action, timestampMs: BigInt(timestampMs), groupId: to.groupId },
              },
            }),
          {
            clientMessageId,
            timestampMs,
            ephemeral: true,
            sealedGroup: sealed !== undefined && "accessKeys" in sealed ? sealed : undefined,
          },
        ),
      );
      return;
    }
    const plaintext = encodeContent({
      body: { case: "typing", value: { action, timestampMs: BigInt(timestampMs) } },
    });
    await this.exclusive(() =>
      this.sendToAccountLocked(to.accountId, plaintext, {
        clientMessageId,
        timestampMs,
        ephemeral: true,
        sealed: sealed !== undefined && "accessKey" in sealed ? sealed : undefined,
      }),
    );
  }

  // ---- groups -------------------------------------------------------------------------------

  /** Creates a group of this account and `memberAccountIds`. */
  async createGroup(memberAccountIds: string[]): Promise<Group> {
    return this.exclusive(async () => {
      const group = await this.transport.createGroup(create(CreateGroupRequestSchema, { memberAccountIds }));
      await this.applyGroupLocked(group);
      return group;
    });
  }

  /** Returns a group with its members' devices (and refreshes the local view of it). */
  async getGroup(groupId: string): Promise<Group> {
    return this.exclusive(async () => {
      const group = await this.transport.getGroup(create(GetGroupRequestSchema, { groupId }));
      await this.applyGroupLocked(group);
      return group;
    });
  }

  /** Adds members; they receive this device's sender key with its next group message. */
  async addGroupMembers(groupId: string, accountIds: string[]): Promise<Group> {
    return this.exclusive(async () => {
      const group = await this.transport.addGroupMembers(
        create(AddGroupMembersRequestSchema, { groupId, accountIds }),
      );
      await this.applyGroupLocked(group);
      return group;
    });
  }

  /**
   * Removes members and rotates this device's sender key for the group (a new distribution id),
   * so removed members cannot read later messages. Other members' devices rotate when they next
   * send and see the removal.
   */
  async removeGroupMembers(groupId: string, accountIds: string[]): Promise<Group> {
    return this.exclusive(async () => {
      const group = await this.transport.removeGroupMembers(
        create(RemoveGroupMembersRequestSchema, { groupId, accountIds }),
      );
      await this.applyGroupLocked(group);
      return group;
    });
  }

  /**
   * Sends a chat message to a group: distributes this device's sender key pairwise to member
   * devices that lack it, then sends one sender-key ciphertext that the server fans out (this
   * account's other devices get it too, as a sync). Mismatched member devices are repaired and
   * the send retried; a removal seen on the way rotates the sender key first.
   *
   * With `sealedSender` (the other members' access keys) the server learns neither this account
   * nor device: sender keys go out as sealed one-to-one messages and the message as one
   * multi-recipient sealed-sender message (libsignal sealed sender v2), authorised by the XOR of
   * the keys; this account's other devices get an identified sync copy. Fails INVALID_ARGUMENT
   * (MISSING_ACCESS_KEY) when a member's key is missing, UNAUTHENTICATED (INVALID_ACCESS_KEY) when
   * the server refuses the keys, UNIMPLEMENTED when the transport lacks sealed sender.
   */
  async sendGroupMessage(groupId: string, data: OutgoingGroupData): Promise<GroupSendResult> {
    const timestampMs = this.now();
    const clientMessageId = randomUUID();
    let sent: content.DataMessage | undefined;
    const result = await this.exclusive(async () => {
      const r = await this.sendGroupLocked(
        groupId,
        (state) => {
          sent = create(content.DataMessageSchema, {
            text: data.text ?? "",
            timestampMs: BigInt(timestampMs),
            clientMessageId,
            reaction: data.reaction,
            group: { groupId, revision: BigInt(state.revision) },
          });
          return encodeContent({ body: { case: "data", value: sent } });
        },
        {
          clientMessageId,
          timestampMs,
          urgent: true,
          forwarded: data.forwarded ?? false,
          sealedGroup: data.sealedSender,
        },
      );
      // A sealed group send leaves out this account's own devices: they get a sync copy.
      if (r.kind === "sent" && data.sealedSender !== undefined && sent !== undefined) {
        try {
          await this.sendToAccountLocked(
            this.self().accountId,
            encodeContent({ body: { case: "sync", value: { sent } } }),
            { clientMessageId: `${clientMessageId}:sync`, timestampMs },
          );
        } catch (error) {
          // The message itself is delivered; a failed copy must not make the caller resend it.
          this.queueEvent(() => this.emitter.emit("error", { error, context: "sync copy" }));
        }
      }
      return r;
    });
    if (result.kind === "not_a_member") return result;
    return {
      kind: "sent",
      messageId: result.messageId,
      serverTimestampMs: result.serverTimestampMs,
      clientMessageId,
      timestampMs,
    };
  }

  /** This device's current sender-key distribution id for a group (it changes on rotation). */
  async groupDistributionId(groupId: string): Promise<string | undefined> {
    return (await this.store.state.getGroup(groupId))?.distributionId;
  }

  // ---- receiving ----------------------------------------------------------------------------

  /**
   * Starts the receive loop: replays contents persisted but not yet delivered, subscribes to
   * the queue, processes envelopes in order and acknowledges each after it is durably handled.
   * Reconnects with backoff on failure; stops when displaced by another connection of this
   * device (an `error` event with reason DISPLACED).
   */
  start(): void {
    if (this.running) return;
    this.self();
    this.running = true;
    this.loop = this.receiveLoop().catch((error: unknown) =>
      this.emitter.emit("error", { error, context: "receive loop" }),
    );
  }

  /** Stops the receive loop and waits for the envelope in progress. */
  async stop(): Promise<void> {
    this.running = false;
    this.subscription?.close();
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  /** Stops receiving and flushes the store. Does not close the transport or the store. */
  async close(): Promise<void> {
    await this.stop();
    await this.mutex.run(() => this.store.flush());
  }

  /**
   * Decrypts and handles one envelope, emits its events and acknowledges it. A redelivered
   * envelope (same server id, or same sender and client message id) is acknowledged and dropped.
   * Undecryptable envelopes are acknowledged and reported as `decryptionFailed`. Store failures
   * propagate and leave the envelope unacknowledged.
   */
  async processEnvelope(envelope: Envelope): Promise<void> {
    const { pending, preKeyUsed } = await this.exclusive(() => this.ingestLocked(envelope));
    if (preKeyUsed) this.keysDirty = true;
    if (pending !== undefined) await this.deliverPending(pending);
    await this.transport.ack([envelope.id]);
  }

  // ---- internals: lifecycle -----------------------------------------------------------------

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await this.mutex.run(fn);
    } finally {
      await this.drainEvents();
    }
  }

  private queueEvent(emit: () => Promise<void>): void {
    this.queuedEvents.push(emit);
  }

  private async drainEvents(): Promise<void> {
    while (this.queuedEvents.length > 0) {
      const next = this.queuedEvents.shift();
      if (next !== undefined) await next();
    }
  }

  private self(): { accountId: string; deviceId: number } {
    const address = this.address;
    if (address === undefined)
      throw new AppError(Code.FailedPrecondition, "NOT_REGISTERED", "this device is not registered yet");
    return address;
  }

  private localAddress(): ProtocolAddress {
    const self = this.self();
    return addressOf(self.accountId, self.deviceId);
  }

  private deviceIdOf(device: Device | undefined): number {
    if (device === undefined || device.deviceId === 0) {
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "registration returned no device id");
    }
    return device.deviceId;
  }

  private async ensureLocalIdentity(): Promise<LocalDevice> {
    if (this.local !== undefined) {
      if (this.local.accountId !== undefined) {
        throw new AppError(
          Code.AlreadyExists,
          "ALREADY_REGISTERED",
          "this store already holds a registered device",
        );
      }
      return this.local;
    }
    const local: LocalDevice = {
      identityKeyPair: toBase64(generateIdentityKeyPair().serialize()),
      registrationId: generateRegistrationId(),
      password: generatePassword(),
    };
    await this.store.state.setLocalDevice(local);
    await this.store.flush();
    this.local = local;
    return local;
  }

  private async completeRegistrationLocked(accountId: string, deviceId: number): Promise<RegisteredDevice> {
    const local = this.local;
    if (local === undefined)
      throw new AppError(Code.FailedPrecondition, "NOT_INITIALIZED", "no local identity");
    const registered: LocalDevice = { ...local, accountId, deviceId };
    await this.store.state.setLocalDevice(registered);
    await this.store.flush();
    this.local = registered;
    this.transport.setDeviceCredentials({ accountId, deviceId, password: local.password });
    await this.uploadInitialKeysLocked();
    if (deviceId !== 1) await this.refreshOwnDevicesLocked();
    return { accountId, deviceId, registrationId: local.registrationId };
  }

  private async refreshOwnDevicesLocked(): Promise<number[]> {
    const self = this.self();
    const response = await this.transport.getAccount(
      create(GetAccountRequestSchema, { accountId: self.accountId }),
    );
    if (response.result.case !== "found") return [];
    const ids = response.result.value.devices.map((d) => d.deviceId).filter((id) => id !== self.deviceId);
    await this.store.state.setOwnDeviceIds(ids);
    for (const stale of await this.store.session.getDeviceIds(self.accountId)) {
      if (!ids.includes(stale)) await this.store.session.deleteSession(addressOf(self.accountId, stale));
    }
    await this.store.flush();
    return ids;
  }

  // ---- internals: keys ----------------------------------------------------------------------

  private identityKeyPair(): IdentityKeyPair {
    if (this.local === undefined)
      throw new AppError(Code.FailedPrecondition, "NOT_INITIALIZED", "no local identity");
    return IdentityKeyPair.deserialize(fromBase64(this.local.identityKeyPair));
  }

  private async uploadInitialKeysLocked(): Promise<void> {
    const identity = this.identityKeyPair();
    const upload = create(UploadKeysRequestSchema, { identityKey: identity.publicKey.serialize() });
    await this.generateKeysLocked(identity, upload, { ec: true, kyber: true, rotate: true });
    await this.store.flush();
    await this.transport.uploadKeys(upload);
  }

  private async generateKeysLocked(
    identity: IdentityKeyPair,
    upload: UploadKeysRequest,
    what: { ec: boolean; kyber: boolean; rotate: boolean },
  ): Promise<void> {
    const nowMs = this.now();
    const ks = await this.store.state.getKeyState();
    if (what.rotate) {
      const signed = generateSignedPreKey(identity, ks.nextSignedPreKeyId, nowMs);
      await this.store.signedPreKey.saveSignedPreKey(signed.id(), signed);
      ks.signedPreKeyId = signed.id();
      ks.signedPreKeyCreatedAtMs = nowMs;
      ks.nextSignedPreKeyId = nextKeyId(ks.nextSignedPreKeyId);
      upload.signedPreKey = signedPreKeyToProto(signed);
      const lastResort = generateKyberPreKey(identity, ks.nextKyberPreKeyId, nowMs);
      await this.store.kyberPreKey.saveKyberPreKey(lastResort.id(), lastResort, { lastResort: true });
      ks.lastResortKyberPreKeyId = lastResort.id();
      ks.nextKyberPreKeyId = nextKeyId(ks.nextKyberPreKeyId);
      upload.lastResortKyberPreKey = signedPreKeyToProto(lastResort);
    }
    if (what.ec) {
      for (let i = 0; i < this.batchSize; i++) {
        const key = generatePreKey(ks.nextPreKeyId);
        await this.store.preKey.savePreKey(key.id(), key);
        ks.nextPreKeyId = nextKeyId(ks.nextPreKeyId);
        upload.oneTimePreKeys.push(preKeyToProto(key));
      }
    }
    if (what.kyber) {
      for (let i = 0; i < this.batchSize; i++) {
        const key = generateKyberPreKey(identity, ks.nextKyberPreKeyId, nowMs);
        await this.store.kyberPreKey.saveKyberPreKey(key.id(), key);
        ks.nextKyberPreKeyId = nextKeyId(ks.nextKyberPreKeyId);
        upload.kyberPreKeys.push(signedPreKeyToProto(key));
      }
    }
    await this.store.state.setKeyState(ks);
  }

  private async maintainKeysLocked(forceRotation: boolean): Promise<KeyMaintenanceReport> {
    this.self();
    const count = await this.transport.getPreKeyCount(create(GetPreKeyCountRequestSchema, {}));
    const ks = await this.store.state.getKeyState();
    const what = {
      ec: count.oneTimePreKeyCount < this.refillThreshold,
      kyber: count.kyberPreKeyCount < this.refillThreshold,
      rotate:
        forceRotation ||
        ks.signedPreKeyCreatedAtMs === undefined ||
        this.now() - ks.signedPreKeyCreatedAtMs >= this.rotationMs,
    };
    const upload = create(UploadKeysRequestSchema, {});
    if (what.ec || what.kyber || what.rotate) {
      await this.generateKeysLocked(this.identityKeyPair(), upload, what);
      // Private halves must be durable before the public halves are handed out.
      await this.store.flush();
      await this.transport.uploadKeys(upload);
    }
    await this.pruneSupersededKeysLocked();
    await this.store.flush();
    return {
      uploadedPreKeys: upload.oneTimePreKeys.length,
      uploadedKyberPreKeys: upload.kyberPreKeys.length,
      rotatedSignedPreKey: what.rotate,
    };
  }

  // A superseded key is deleted once its successor has been published for the retention period:
  // pre-key messages built from the old bundle may still be queued until then.
  private async pruneSupersededKeysLocked(): Promise<void> {
    const cutoff = this.now() - this.retentionMs;
    const ks = await this.store.state.getKeyState();
    const signed = (await this.store.signedPreKey.listSignedPreKeys()).sort(
      (a, b) => a.createdAtMs - b.createdAtMs || a.id - b.id,
    );
    for (let i = 0; i < signed.length - 1; i++) {
      const key = signed[i];
      const successor = signed[i + 1];
      if (
        key !== undefined &&
        successor !== undefined &&
        key.id !== ks.signedPreKeyId &&
        successor.createdAtMs <= cutoff
      ) {
        await this.store.signedPreKey.removeSignedPreKey(key.id);
      }
    }
    const lastResort = (await this.store.kyberPreKey.listKyberPreKeys())
      .filter((k) => k.lastResort)
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id - b.id);
    for (let i = 0; i < lastResort.length - 1; i++) {
      const key = lastResort[i];
      const successor = lastResort[i + 1];
      if (
        key !== undefined &&
        successor !== undefined &&
        key.id !== ks.lastResortKyberPreKeyId &&
        successor.createdAtMs <= cutoff
      ) {
        await this.store.kyberPreKey.removeKyberPreKey(key.id);
      }
    }
  }

  /**
   * Generates everything the identity key signs for `identity`: a signed pre-key, a last-resort
   * Kyber key, and a replacement (same id) for each one-time Kyber key, so the server, which
   * overwrites keys by id, hands out no key signed by the old identity. Returns the uploads, the
   * first carrying the identity key.
   */
  private async replaceSignedKeysLocked(identity: IdentityKeyPair): Promise<UploadKeysRequest[]> {
    const kyberKeys = await this.store.kyberPreKey.listKyberPreKeys();
    // The server hands out the lowest ids first, so the keys it still holds are the newest ones.
    const oneTimeIds = kyberKeys
      .filter((k) => !k.lastResort)
      .map((k) => k.id)
      .sort((a, b) => a - b)
      .slice(-MAX_STORED_ONE_TIME_KEYS);
    for (const { id } of kyberKeys) await this.store.kyberPreKey.removeKyberPreKey(id);
    for (const { id } of await this.store.signedPreKey.listSignedPreKeys()) {
      await this.store.signedPreKey.removeSignedPreKey(id);
    }
    const first = create(UploadKeysRequestSchema, { identityKey: identity.publicKey.serialize() });
    await this.generateKeysLocked(identity, first, { ec: false, kyber: false, rotate: true });
    const uploads = [first];
    const nowMs = this.now();
    for (const id of oneTimeIds) {
      let upload = uploads[uploads.length - 1] ?? first;
      if (upload.kyberPreKeys.length >= MAX_KEYS_PER_UPLOAD) {
        upload = create(UploadKeysRequestSchema, {});
        uploads.push(upload);
      }
      const key = generateKyberPreKey(identity, id, nowMs);
      await this.store.kyberPreKey.saveKyberPreKey(id, key);
      upload.kyberPreKeys.push(signedPreKeyToProto(key));
    }
    return uploads;
  }

  private async fingerprint(accountId: string, deviceId: number): Promise<Fingerprint | undefined> {
    const self = this.self();
    const remote = await this.store.identity.getIdentity(addressOf(accountId, deviceId));
    if (remote === null) return undefined;
    const encoder = new TextEncoder();
    return Fingerprint.new(
      FINGERPRINT_ITERATIONS,
      FINGERPRINT_VERSION,
      encoder.encode(`${self.accountId}.${self.deviceId}`),
      this.identityKeyPair().publicKey,
      encoder.encode(`${accountId}.${deviceId}`),
      remote,
    );
  }

  // ---- internals: sessions and one-to-one sends ---------------------------------------------

  private async usableSessionDevices(accountId: string): Promise<number[]> {
    const self = this.self();
    const out: number[] = [];
    for (const deviceId of await this.store.session.getDeviceIds(accountId)) {
      if (accountId === self.accountId && deviceId === self.deviceId) continue;
      const record = await this.store.session.getSession(addressOf(accountId, deviceId));
      if (record?.hasCurrentState(new Date(this.now())) === true) out.push(deviceId);
    }
    return out;
  }

  /** Fetches bundles (deviceId 0: all devices) and starts PQXDH sessions; returns device ids set up. */
  private async fetchSessionsLocked(accountId: string, deviceId: number): Promise<number[] | "not_found"> {
    const self = this.self();
    const response = await this.transport.getPreKeyBundles(
      create(GetPreKeyBundlesRequestSchema, { accountId, deviceId }),
    );
    if (response.result.case === "notFound") return "not_found";
    if (response.result.case !== "bundles")
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "empty GetPreKeyBundles response");
    const done: number[] = [];
    for (const bundle of response.result.value.bundles) {
      if (accountId === self.accountId && bundle.deviceId === self.deviceId) continue;
      await processPreKeyBundle(
        bundleFromProto(bundle),
        addressOf(accountId, bundle.deviceId),
        this.localAddress(),
        this.store.session,
        this.identity,
        new Date(this.now()),
      );
      done.push(bundle.deviceId);
    }
    return done;
  }

  private async encryptForDevice(
    accountId: string,
    deviceId: number,
    plaintext: Uint8Array<ArrayBuffer>,
    certificate?: SenderCertificate,
  ): Promise<OutgoingMessage> {
    const address = addressOf(accountId, deviceId);
    if (certificate !== undefined) {
      const sealed = await sealedSenderEncryptMessage(
        plaintext,
        address,
        certificate,
        this.store.session,
        this.identity,
      );
      const session = await this.store.session.getSession(address);
      return create(OutgoingMessageSchema, {
        deviceId,
        registrationId: session?.remoteRegistrationId() ?? 0,
        type: EnvelopeType.SEALED_SENDER,
        content: sealed,
      });
    }
    const ciphertext = await signalEncrypt(
      plaintext,
      address,
      this.localAddress(),
      this.store.session,
      this.identity,
      new Date(this.now()),
    );
    const record = await this.store.session.getSession(address);
    return create(OutgoingMessageSchema, {
      deviceId,
      registrationId: record?.remoteRegistrationId() ?? 0,
      type:
        ciphertext.type() === PREKEY_CIPHERTEXT_TYPE ? EnvelopeType.PREKEY_MESSAGE : EnvelopeType.CIPHERTEXT,
      content: ciphertext.serialize(),
    });
  }

  private async sendToAccountLocked(
    accountId: string,
    plaintext: Uint8Array<ArrayBuffer>,
    options: SendOptions,
  ): Promise<AccountSendResult> {
    const self = this.self();
    const isSelf = accountId === self.accountId;
    for (let attempt = 1; ; attempt++) {
      let devices = await this.usableSessionDevices(accountId);
      const expected = new Set([
        ...(options.expectedDevices ?? []),
        ...(isSelf ? await this.store.state.getOwnDeviceIds() : []),
      ]);
      if (isSelf) expected.delete(self.deviceId);
      if (!isSelf && devices.length === 0 && expected.size === 0) {
        if ((await this.fetchSessionsLocked(accountId, 0)) === "not_found") return { kind: "not_found" };
      }
      for (const deviceId of expected) {
        if (!devices.includes(deviceId)) await this.fetchSessionsLocked(accountId, deviceId);
      }
      devices = await this.usableSessionDevices(accountId);
      if (devices.length === 0) {
        if (isSelf) return { kind: "no_devices" };
        throw new AppError(
          Code.FailedPrecondition,
          "NO_DEVICE_KEYS",
          `account ${accountId} has no device with keys`,
        );
      }
      const messages: OutgoingMessage[] = [];
      const certificate = options.sealed ? await this.senderCertificateLocked() : undefined;
      for (const deviceId of devices)
        messages.push(await this.encryptForDevice(accountId, deviceId, plaintext, certificate));
      // The advanced ratchet must be durable before its ciphertext leaves: reusing a chain key
      // after a crash would make the recipient reject the message as a duplicate.
      await this.store.flush();
      const request = create(SendMessageRequestSchema, {
        destinationAccountId: accountId,
        messages,
        clientMessageId: options.clientMessageId,
        clientTimestampMs: BigInt(options.timestampMs),
        ephemeral: options.ephemeral ?? false,
        urgent: options.urgent ?? false,
        forwarded: options.forwarded ?? false,
        reportTag: options.reportTag,
        noDeliveryReceipt: options.noDeliveryReceipt ?? false,
      });
      const outcome = options.sealed
        ? await this.sealedTransport("sendSealedMessage").sendSealedMessage(request, options.sealed.accessKey)
        : await this.transport.sendMessage(request);
      switch (outcome.kind) {
        case "sent":
          if (isSelf) await this.store.state.setOwnDeviceIds(devices);
          return {
            kind: "sent",
            messageId: outcome.messageId,
            serverTimestampMs: outcome.serverTimestampMs,
            devices: messages.map((m) => ({ deviceId: m.deviceId, registrationId: m.registrationId })),
          };
        case "not_found":
          return { kind: "not_found" };
        case "mismatched": {
          for (const deviceId of outcome.extraDevices)
            await this.store.session.deleteSession(addressOf(accountId, deviceId));
          if (isSelf) {
            const own = (await this.store.state.getOwnDeviceIds()).filter(
              (d) => !outcome.extraDevices.includes(d),
            );
            await this.store.state.setOwnDeviceIds([...own, ...outcome.missingDevices]);
          }
          for (const deviceId of outcome.missingDevices) {
            const done = await this.fetchSessionsLocked(accountId, deviceId);
            if (done === "not_found" || !done.includes(deviceId)) {
              throw new AppError(
                Code.FailedPrecondition,
                "NO_DEVICE_KEYS",
                `device ${accountId}.${deviceId} has no keys`,
              );
            }
          }
          break;
        }
        case "stale":
          for (const deviceId of outcome.staleDevices) {
            await this.store.session.deleteSession(addressOf(accountId, deviceId));
            await this.fetchSessionsLocked(accountId, deviceId);
          }
          break;
      }
      if (attempt >= this.maxSendAttempts) {
        throw new AppError(
          Code.Aborted,
          "DEVICE_LIST_UNSTABLE",
          `device list of ${accountId} kept changing during the send`,
        );
      }
    }
  }

  /**
   * Sends an empty Content (which readers ignore) to every device of `accountId`, starting new
   * sessions from fresh bundles with `deviceIds` and any device without a usable session. The
   * peer's devices replace their sessions on reading it, and see this device's current identity.
   */
  private async sendSessionResetLocked(accountId: string, deviceIds: number[]): Promise<void> {
    const result = await this.sendToAccountLocked(accountId, encodeContent({}), {
      clientMessageId: randomUUID(),
      timestampMs: this.now(),
      expectedDevices: deviceIds,
    });
    if (result.kind !== "sent") return;
    for (const { deviceId } of result.devices) this.sessionResets.set(`${accountId}.${deviceId}`, this.now());
  }

  /**
   * After a one-to-one message from a device failed to decrypt (lost or restored session state,
   * a changed identity key, ...), archives the session with it and resets the session, at most
   * once per SESSION_RESET_INTERVAL_MS per device. Failures become `error` events.
   */
  private async resetSessionAfterFailureLocked(accountId: string, deviceId: number): Promise<void> {
    const key = `${accountId}.${deviceId}`;
    const last = this.sessionResets.get(key);
    if (last !== undefined && this.now() - last < SESSION_RESET_INTERVAL_MS) return;
    this.sessionResets.set(key, this.now());
    try {
      const address = addressOf(accountId, deviceId);
      // Archived, not deleted: messages still in flight on the old session remain readable.
      const record = await this.store.session.getSession(address);
      if (record?.hasCurrentState() === true) {
        record.archiveCurrentState();
        await this.store.session.saveSession(address, record);
      }
      await this.sendSessionResetLocked(accountId, [deviceId]);
    } catch (error) {
      this.queueEvent(() => this.emitter.emit("error", { error, context: "session reset" }));
    }
  }

  // ---- internals: groups --------------------------------------------------------------------

  /** Merges a server view of a group into local state, rotating the sender key after a removal. */
  private async applyGroupLocked(group: Group): Promise<GroupState> {
    const self = this.self();
    const previous = await this.store.state.getGroup(group.id);
    const members: GroupState["members"] = {};
    for (const member of group.members) {
      const accountId = member.account?.id;
      if (accountId === undefined) continue;
      members[accountId] = Object.fromEntries(
        member.devices.map((d) => [String(d.deviceId), d.registrationId]),
      );
    }
    let state: GroupState;
    if (previous === undefined) {
      state = { distributionId: randomUUID(), revision: Number(group.revision), members, distributedTo: {} };
    } else {
      const removed = Object.keys(previous.distributedTo).some((addr) => {
        const dot = addr.lastIndexOf(".");
        return members[addr.slice(0, dot)]?.[addr.slice(dot + 1)] === undefined;
      });
      if (removed) {
        state = {
          distributionId: randomUUID(),
          revision: Number(group.revision),
          members,
          distributedTo: {},
        };
      } else {
        // A device whose registration id changed was reinstalled: it needs the key again.
        const distributedTo = Object.fromEntries(
          Object.entries(previous.distributedTo).filter(([addr, registrationId]) => {
            const dot = addr.lastIndexOf(".");
            return members[addr.slice(0, dot)]?.[addr.slice(dot + 1)] === registrationId;
          }),
        );
        state = {
          distributionId: previous.distributionId,
          revision: Number(group.revision),
          members,
          distributedTo,
        };
      }
    }
    const own = members[self.accountId];
    if (own !== undefined) {
      await this.store.state.setOwnDeviceIds(
        Object.keys(own)
          .map(Number)
          .filter((d) => d !== self.deviceId),
      );
    }
    await this.store.state.setGroup(group.id, state);
    await this.store.flush();
    return state;
  }

  /** Whether `accountId` is a member of the group: as last seen, else as the server lists it now. */
  private async isGroupMemberLocked(groupId: string, accountId: string): Promise<boolean> {
    const known = await this.store.state.getGroup(groupId);
    if (known !== undefined && accountId in known.members) return true;
    const fresh = await this.refreshGroupLocked(groupId);
    return fresh !== undefined && accountId in fresh.members;
  }

  /** Re-reads a group from the server; undefined when it is unknown or this account left it. */
  private async refreshGroupLocked(groupId: string): Promise<GroupState | undefined> {
    try {
      return await this.applyGroupLocked(
        await this.transport.getGroup(create(GetGroupRequestSchema, { groupId })),
      );
    } catch (error) {
      if (isAppError(error) && error.code === Code.NotFound) return undefined;
      throw error;
    }
  }

  private async distributeSenderKeyLocked(
    groupId: string,
    state: GroupState,
    sealed?: GroupSealedSender,
  ): Promise<GroupState> {
    const self = this.self();
    const isSelfDevice = (accountId: string, deviceId: string): boolean =>
      accountId === self.accountId && Number(deviceId) === self.deviceId;
    const needy = Object.entries(state.members)
      .filter(([accountId, devices]) =>
        Object.keys(devices).some(
          (d) => !isSelfDevice(accountId, d) && state.distributedTo[`${accountId}.${d}`] === undefined,
        ),
      )
      .map(([accountId]) => accountId);
    if (needy.length === 0) return state;
    const skdm = await SenderKeyDistributionMessage.create(
      this.localAddress(),
      state.distributionId,
      this.store.senderKey,
    );
    const plaintext = encodeContent({
      body: { case: "senderKeyDistribution", value: { groupId, distributionMessage: skdm.serialize() } },
    });
    for (const accountId of needy) {
      const expectedDevices = Object.keys(state.members[accountId] ?? {})
        .filter((d) => !isSelfDevice(accountId, d))
        .map(Number);
      const result = await this.sendToAccountLocked(accountId, plaintext, {
        clientMessageId: randomUUID(),
        timestampMs: this.now(),
        expectedDevices,
        // Sealed group sends hand out their sender keys sealed too (not to one's own devices).
        sealed:
          sealed === undefined || accountId === self.accountId
            ? undefined
            : { accessKey: memberAccessKey(sealed, accountId) },
      });
      if (result.kind === "not_found") {
        delete state.members[accountId];
        continue;
      }
      if (result.kind !== "sent") continue;
      const devices: Record<string, number> = {};
      for (const { deviceId, registrationId } of result.devices) {
        devices[String(deviceId)] = registrationId;
        state.distributedTo[`${accountId}.${deviceId}`] = registrationId;
      }
      if (accountId === self.accountId) devices[String(self.deviceId)] = this.local?.registrationId ?? 0;
      state.members[accountId] = devices;
    }
    await this.store.state.setGroup(groupId, state);
    await this.store.flush();
    return state;
  }

  private async sendGroupLocked(
    groupId: string,
    build: (state: GroupState) => Uint8Array<ArrayBuffer>,
    options: SendOptions,
  ): Promise<{ kind: "sent"; messageId: string; serverTimestampMs: number } | { kind: "not_a_member" }> {
    const self = this.self();
    const known = (await this.store.state.getGroup(groupId)) ?? (await this.refreshGroupLocked(groupId));
    if (known === undefined) return { kind: "not_a_member" };
    let state: GroupState = known;
    for (let attempt = 1; ; attempt++) {
      if (options.sealedGroup !== undefined)
        for (const accountId of Object.keys(state.members))
          if (accountId !== self.accountId) memberAccessKey(options.sealedGroup, accountId);
      state = await this.distributeSenderKeyLocked(groupId, state, options.sealedGroup);
      const outcome =
        options.sealedGroup === undefined
          ? await this.sendIdentifiedGroupLocked(groupId, state, build(state), options)
          : await this.sendSealedGroupLocked(groupId, state, build(state), options, options.sealedGroup);
      if (outcome.kind === "sent" || outcome.kind === "not_a_member") return outcome;
      for (const account of outcome.accounts) {
        for (const deviceId of account.staleDevices) {
          const address = addressOf(account.accountId, deviceId);
          const key = `${account.accountId}.${deviceId}`;
          const record = await this.store.session.getSession(address);
          // Only a session still bound to the stale registration is useless; a newer one (the
          // peer already wrote to us from its reinstall) just needs the sender key again.
          if (record !== null && record.remoteRegistrationId() === state.distributedTo[key]) {
            await this.store.session.deleteSession(address);
          }
          delete state.distributedTo[key];
        }
        for (const deviceId of account.extraDevices) {
          if (account.accountId !== self.accountId || deviceId !== self.deviceId) {
            await this.store.session.deleteSession(addressOf(account.accountId, deviceId));
          }
        }
      }
      await this.store.state.setGroup(groupId, state);
      const refreshed = await this.refreshGroupLocked(groupId);
      if (refreshed === undefined) return { kind: "not_a_member" };
      state = refreshed;
      if (attempt >= this.maxSendAttempts) {
        throw new AppError(
          Code.Aborted,
          "DEVICE_LIST_UNSTABLE",
          `member devices of group ${groupId} kept changing during the send`,
        );
      }
    }
  }

  /** One sender-key ciphertext through SendGroupMessage: the server fans it out to the group. */
  private async sendIdentifiedGroupLocked(
    groupId: string,
    state: GroupState,
    plaintext: Uint8Array<ArrayBuffer>,
    options: SendOptions,
  ): Promise<GroupSendOutcome> {
    const self = this.self();
    const ciphertext = await groupEncrypt(
      this.localAddress(),
      state.distributionId,
      this.store.senderKey,
      plaintext,
    );
    await this.store.flush();
    const expectedRecipients = Object.entries(state.members)
      .map(([accountId, devices]) =>
        create(RecipientDevicesSchema, {
          accountId,
          devices: Object.entries(devices)
            .filter(([d]) => !(accountId === self.accountId && Number(d) === self.deviceId))
            .map(([d, registrationId]) => ({
              deviceId: Number(d),
              registrationId: state.distributedTo[`${accountId}.${d}`] ?? registrationId,
            })),
        }),
      )
      .filter((r) => r.devices.length > 0);
    const outcome = await this.transport.sendGroupMessage(
      create(SendGroupMessageRequestSchema, {
        groupId,
        content: ciphertext.serialize(),
        clientMessageId: options.clientMessageId,
        clientTimestampMs: BigInt(options.timestampMs),
        ephemeral: options.ephemeral ?? false,
        urgent: options.urgent ?? false,
        forwarded: options.forwarded ?? false,
        expectedRecipients,
      }),
    );
    return outcome;
  }

  /**
   * Multi-recipient sealed-sender messages (libsignal sealed sender v2) to every device of the
   * other member accounts, in one call: the sender-key ciphertext inside an UnidentifiedSenderMessageContent
   * that carries this device's certificate and the group id, authorised by the XOR of the
   * members' access keys. Devices without a usable session are left out and marked for a new
   * sender-key distribution (the server answers them as missing; the caller retries).
   */
  private async sendSealedGroupLocked(
    groupId: string,
    state: GroupState,
    plaintext: Uint8Array<ArrayBuffer>,
    options: SendOptions,
    sealed: GroupSealedSender,
  ): Promise<GroupSendOutcome> {
    const self = this.self();
    const recipients: ProtocolAddress[] = [];
    const combined = new Uint8Array(SEALED_ACCESS_KEY_BYTES);
    for (const [accountId, devices] of Object.entries(state.members)) {
      if (accountId === self.accountId) continue;
      // Unrestricted members count as all-zero keys: the server leaves them out of the XOR.
      const key = memberAccessKey(sealed, accountId);
      for (let i = 0; i < combined.byteLength; i++) combined[i] = (combined[i] ?? 0) ^ (key[i] ?? 0);
      for (const d of Object.keys(devices)) {
        const address = addressOf(accountId, Number(d));
        const record = await this.store.session.getSession(address);
        if (record?.hasCurrentState(new Date(this.now())) === true) recipients.push(address);
        else delete state.distributedTo[`${accountId}.${d}`];
      }
    }
    if (recipients.length === 0)
      return { kind: "sent", messageId: "", serverTimestampMs: this.now(), duplicate: false };
    const ciphertext = await groupEncrypt(
      this.localAddress(),
      state.distributionId,
      this.store.senderKey,
      plaintext,
    );
    const usmc = UnidentifiedSenderMessageContent.new(
      ciphertext,
      await this.senderCertificateLocked(),
      options.ephemeral === true ? ContentHint.Implicit : ContentHint.Default,
      new Uint8Array(new TextEncoder().encode(groupId)),
    );
    // A v2 message seals one payload per account, for one identity key; every device here has its
    // own, so the k-th device of each account goes into the k-th message.
    const ranks: ProtocolAddress[][] = [];
    const seen = new Map<string, number>();
    for (const address of recipients) {
      const rank = seen.get(address.name()) ?? 0;
      seen.set(address.name(), rank + 1);
      (ranks[rank] ??= []).push(address);
    }
    const messages: Uint8Array[] = [];
    for (const rank of ranks)
      messages.push(
        await sealedSenderMultiRecipientEncrypt({
          content: usmc,
          recipients: rank,
          identityStore: this.identity,
          sessionStore: this.store.session,
        }),
      );
    await this.store.flush();
    return this.sealedTransport("sendSealedMultiRecipientMessage").sendSealedMultiRecipientMessage(
      create(SendMultiRecipientMessageRequestSchema, {
        messages,
        clientMessageId: options.clientMessageId,
        clientTimestampMs: BigInt(options.timestampMs),
        ephemeral: options.ephemeral ?? false,
        urgent: options.urgent ?? false,
        forwarded: options.forwarded ?? false,
      }),
      combined,
    );
  }

  // ---- internals: safety --------------------------------------------------------------------

  private sealedTransport<
    K extends
      | "sendSealedMessage"
      | "sendSealedMultiRecipientMessage"
      | "getSenderCertificate"
      | "getSealedSenderTrustRoot",
  >(method: K): Required<Pick<Transport, K>> {
    if (this.transport[method] === undefined)
      throw new AppError(
        Code.Unimplemented,
        "SEALED_SENDER_UNSUPPORTED",
        "this transport does not support sealed sender",
      );
    return this.transport as unknown as Required<Pick<Transport, K>>;
  }

  /** This device's sender certificate, renewed when less than an hour of validity is left. */
  private async senderCertificateLocked(): Promise<SenderCertificate> {
    const cached = this.senderCertificate;
    if (cached !== undefined && cached.expiresAtMs - this.now() > 3600_000) return cached.certificate;
    const issued = await this.sealedTransport("getSenderCertificate").getSenderCertificate();
    const certificate = SenderCertificate.deserialize(copyBytes(issued.certificate));
    this.senderCertificate = { certificate, expiresAtMs: issued.expiresAtMs };
    return certificate;
  }

  private async trustRootLocked(): Promise<SignalPublicKey> {
    this.sealedTrustRoot ??= SignalPublicKey.deserialize(
      copyBytes(await this.sealedTransport("getSealedSenderTrustRoot").getSealedSenderTrustRoot()),
    );
    return this.sealedTrustRoot;
  }

  /**
   * Opens a sealed-sender envelope: decrypts the outer layer (libsignal checks that its sender
   * key matches the certificate), validates the certificate against the trust root at the
   * server's commit time, then decrypts the inner message on the session with the sender.
   */
  private async openSealedLocked(envelope: Envelope): Promise<{
    source: { accountId: string; deviceId: number };
    certificate: Uint8Array;
    plaintext: Uint8Array<ArrayBuffer>;
    /** The inner message was a pre-key message (it used up a one-time key). */
    preKey: boolean;
    /** The group of a sealed group message (a sender-key message inside), from inside the seal. */
    groupId?: string;
  }> {
    const usmc = await sealedSenderDecryptToUsmc(copyBytes(envelope.content), this.identity);
    const certificate = usmc.senderCertificate();
    if (!certificate.validate(await this.trustRootLocked(), Number(envelope.serverTimestampMs)))
      throw new AppError(
        Code.PermissionDenied,
        "INVALID_SENDER_CERTIFICATE",
        "the sender certificate did not validate",
      );
    const source = { accountId: certificate.senderUuid(), deviceId: certificate.senderDeviceId() };
    const self = this.self();
    if (source.accountId === self.accountId && source.deviceId === self.deviceId)
      throw new AppError(Code.InvalidArgument, "SEALED_FROM_SELF", "a sealed message from this very device");
    const sender = addressOf(source.accountId, source.deviceId);
    const body = usmc.contents();
    const groupId = usmc.groupId();
    if (usmc.msgType() === SENDER_KEY_CIPHERTEXT_TYPE) {
      const plaintext = await groupDecrypt(sender, this.store.senderKey, body);
      const group = groupId === null ? undefined : new TextDecoder().decode(groupId);
      // The server cannot check who sent a sealed group message, so the recipient does: the
      // sender must be a member of the group named inside the seal (as last seen, or as the
      // server lists it now, e.g. just added).
      if (group !== undefined && !(await this.isGroupMemberLocked(group, source.accountId)))
        throw new AppError(
          Code.PermissionDenied,
          "NOT_A_GROUP_MEMBER",
          "a sealed group message from an account that is not a member of the group",
        );
      return {
        source,
        certificate: certificate.serialize(),
        plaintext,
        preKey: false,
        ...(group === undefined ? {} : { groupId: group }),
      };
    }
    const plaintext =
      usmc.msgType() === PREKEY_CIPHERTEXT_TYPE
        ? await signalDecryptPreKey(
            PreKeySignalMessage.deserialize(body),
            sender,
            this.localAddress(),
            this.store.session,
            this.identity,
            this.store.preKey,
            this.store.signedPreKey,
            this.store.kyberPreKey,
          )
        : await signalDecrypt(
            SignalMessage.deserialize(body),
            sender,
            this.localAddress(),
            this.store.session,
            this.identity,
          );
    return {
      source,
      certificate: certificate.serialize(),
      plaintext,
      preKey: usmc.msgType() === PREKEY_CIPHERTEXT_TYPE,
    };
  }

  // ---- internals: receiving -----------------------------------------------------------------

  /** Decrypts a one-to-one (pre-key or ratchet) message from `sender`, advancing the session. */
  private async decryptOneToOneLocked(
    type: EnvelopeType.PREKEY_MESSAGE | EnvelopeType.CIPHERTEXT,
    body: Uint8Array<ArrayBuffer>,
    sender: ProtocolAddress,
  ): Promise<Uint8Array<ArrayBuffer>> {
    return type === EnvelopeType.PREKEY_MESSAGE
      ? signalDecryptPreKey(
          PreKeySignalMessage.deserialize(body),
          sender,
          this.localAddress(),
          this.store.session,
          this.identity,
          this.store.preKey,
          this.store.signedPreKey,
          this.store.kyberPreKey,
        )
      : signalDecrypt(
          SignalMessage.deserialize(body),
          sender,
          this.localAddress(),
          this.store.session,
          this.identity,
        );
  }

  /**
   * The kept preview of a held envelope, when this envelope is that one: same server id, sender
   * device and client message id (a kept entry that does not match is dropped).
   */
  private async keptPreviewLocked(envelope: Envelope): Promise<PendingContent | undefined> {
    const kept = await this.store.state.findHeld(envelope.id);
    if (kept === undefined) return undefined;
    const original = fromBinary(EnvelopeSchema, fromBase64(kept.envelope));
    if (
      envelope.source !== undefined &&
      original.source?.accountId === envelope.source.accountId &&
      original.source.deviceId === envelope.source.deviceId &&
      original.clientMessageId === envelope.clientMessageId
    )
      return kept;
    await this.store.state.removeHeld(envelope.id);
    return undefined;
  }

  /**
   * Decrypts one held envelope for a preview, once: the plaintext is kept in the store (durable
   * with the advanced session) until the envelope is delivered again after acceptance. Nothing
   * is emitted and nothing is marked processed.
   */
  private async previewLocked(
    envelope: Envelope,
  ): Promise<
    { kind: "content"; content: content.Content } | { kind: "failed"; error: unknown } | { kind: "done" }
  > {
    const state = this.store.state;
    let kept = await this.keptPreviewLocked(envelope);
    if (kept === undefined) {
      // Already delivered (accepted meanwhile): the application has seen it as a message.
      if (await state.isProcessed(processedRefOf(envelope))) return { kind: "done" };
      const source = envelope.source;
      const type = envelope.type;
      if (
        source === undefined ||
        source.accountId === "" ||
        (type !== EnvelopeType.PREKEY_MESSAGE && type !== EnvelopeType.CIPHERTEXT)
      )
        return {
          kind: "failed",
          error: new AppError(
            Code.Unimplemented,
            "UNSUPPORTED_ENVELOPE_TYPE",
            `a held envelope of type ${type} cannot be previewed`,
          ),
        };
      let plaintext: Uint8Array<ArrayBuffer>;
      try {
        plaintext = await this.decryptOneToOneLocked(
          type,
          copyBytes(envelope.content),
          addressOf(source.accountId, source.deviceId),
        );
      } catch (error) {
        // Left as it is: after acceptance the receive loop tries again and reports the failure.
        return { kind: "failed", error };
      }
      if (type === EnvelopeType.PREKEY_MESSAGE) this.keysDirty = true;
      const stripped = clone(EnvelopeSchema, envelope);
      stripped.content = new Uint8Array(0);
      kept = {
        serverId: envelope.id,
        envelope: toBase64(toBinary(EnvelopeSchema, stripped)),
        content: toBase64(plaintext),
      };
      // The spent ratchet step and the only copy of its plaintext become durable together.
      await state.addHeld(kept);
      await this.store.flush();
    }
    try {
      return { kind: "content", content: decodeContent(fromBase64(kept.content)) };
    } catch (error) {
      return { kind: "failed", error };
    }
  }

  private async ingestLocked(envelope: Envelope): Promise<{ pending?: PendingContent; preKeyUsed: boolean }> {
    const state = this.store.state;
    const ref = processedRefOf(envelope);
    const meta = metaOf(envelope);
    if (await state.isProcessed(ref)) return { preKeyUsed: false };
    // A held request this device already decrypted for a preview: its plaintext stands in for a
    // second decryption, which would fail (the ratchet step is spent).
    const kept = await this.keptPreviewLocked(envelope);
    const finish = async (): Promise<void> => {
      if (kept !== undefined) await state.removeHeld(envelope.id);
      await state.markProcessed(ref, this.now());
      await this.store.flush();
    };
    if (envelope.type === EnvelopeType.SERVER_DELIVERY_RECEIPT) {
      this.queueEvent(() => this.emitter.emit("deliveryReceipt", { meta }));
      await finish();
      return { preKeyUsed: false };
    }
    const self = this.self();
    let preKeyUsed = kept === undefined && envelope.type === EnvelopeType.PREKEY_MESSAGE;
    let plaintext: Uint8Array<ArrayBuffer>;
    let decrypted = false;
    let sealed:
      | {
          source: { accountId: string; deviceId: number };
          certificate: Uint8Array;
          plaintext: Uint8Array<ArrayBuffer>;
          preKey: boolean;
          groupId?: string;
        }
      | undefined;
    try {
      if (envelope.type === EnvelopeType.SEALED_SENDER) {
        sealed = await this.openSealedLocked(envelope);
        preKeyUsed = sealed.preKey;
      }
      const source = sealed?.source ?? envelope.source;
      if (source === undefined || source.accountId === "") {
        throw new AppError(
          Code.Unimplemented,
          "SEALED_SENDER_UNSUPPORTED",
          "envelopes without a source are not supported",
        );
      }
      const sender = addressOf(source.accountId, source.deviceId);
      const body = copyBytes(envelope.content);
      if (kept !== undefined) plaintext = fromBase64(kept.content);
      else {
        switch (envelope.type) {
          case EnvelopeType.SEALED_SENDER:
            if (sealed === undefined)
              throw new AppError(Code.Internal, "SEALED_NOT_OPENED", "sealed envelope not opened");
            plaintext = sealed.plaintext;
            break;
          case EnvelopeType.PREKEY_MESSAGE:
          case EnvelopeType.CIPHERTEXT:
            plaintext = await this.decryptOneToOneLocked(envelope.type, body, sender);
            break;
          case EnvelopeType.SENDER_KEY_MESSAGE:
            plaintext = await groupDecrypt(sender, this.store.senderKey, body);
            break;
          default:
            throw new AppError(
              Code.Unimplemented,
              "UNSUPPORTED_ENVELOPE_TYPE",
              `envelope type ${envelope.type} is not supported`,
            );
        }
      }
      decrypted = true;
      const decoded = decodeContent(plaintext);
      if (source.accountId === self.accountId && source.deviceId !== self.deviceId) {
        const own = await state.getOwnDeviceIds();
        if (!own.includes(source.deviceId)) await state.setOwnDeviceIds([...own, source.deviceId]);
      }
      if (decoded.body.case === "senderKeyDistribution") {
        const skdm = SenderKeyDistributionMessage.deserialize(
          copyBytes(decoded.body.value.distributionMessage),
        );
        await processSenderKeyDistributionMessage(sender, skdm, this.store.senderKey);
        await finish();
        return { preKeyUsed };
      }
      // No body: a session reset (or a body from a newer client); the session is all it carried.
      if (decoded.body.case === undefined) {
        await finish();
        return { preKeyUsed };
      }
    } catch (error) {
      // A ratchet message seen before (its keys are spent) is a redelivery: drop it quietly.
      if (error instanceof LibSignalErrorBase && error.is(ErrorCode.DuplicatedMessage)) {
        await finish();
        return { preKeyUsed };
      }
      if (isAppError(error) && error.code === Code.Unavailable) throw error;
      this.queueEvent(() => this.emitter.emit("decryptionFailed", { meta, error }));
      await finish();
      const source = envelope.source;
      const oneToOne =
        envelope.type === EnvelopeType.PREKEY_MESSAGE || envelope.type === EnvelopeType.CIPHERTEXT;
      // The sender's session with this device is unusable: without a reset it would keep using it.
      if (!decrypted && oneToOne && source !== undefined && source.accountId !== "") {
        await this.resetSessionAfterFailureLocked(source.accountId, source.deviceId);
      }
      return { preKeyUsed };
    }
    const stripped = clone(EnvelopeSchema, envelope);
    stripped.content = new Uint8Array(0);
    // A sealed envelope names no sender; locally it gets the one its certificate proved.
    if (sealed) stripped.source = create(AddressSchema, sealed.source);
    // A sealed group message names its group only inside the seal.
    if (sealed?.groupId !== undefined) stripped.groupId = sealed.groupId;
    const pending: PendingContent = {
      serverId: envelope.id,
      envelope: toBase64(toBinary(EnvelopeSchema, stripped)),
      content: toBase64(plaintext),
      ...(sealed ? { senderCertificate: toBase64(sealed.certificate) } : {}),
    };
    // Session state, the de-duplication mark and the plaintext become durable together, so a
    // crash before the application has seen it replays it instead of losing it.
    await state.addPending(pending);
    await finish();
    return { pending, preKeyUsed };
  }

  private async deliverPending(pending: PendingContent): Promise<void> {
    const envelope = fromBinary(EnvelopeSchema, fromBase64(pending.envelope));
    const meta = metaOf(envelope);
    if (pending.senderCertificate !== undefined)
      meta.senderCertificate = fromBase64(pending.senderCertificate);
    const self = this.self();
    const fromSelf = meta.sender.accountId === self.accountId;
    let decoded: content.Content | undefined;
    try {
      decoded = decodeContent(fromBase64(pending.content));
    } catch (error) {
      await this.emitter.emit("decryptionFailed", { meta, error });
    }
    const body = decoded?.body;
    switch (body?.case) {
      case "data":
        if (fromSelf)
          await this.emitter.emit("sync", { meta, destinationAccountId: undefined, message: body.value });
        else await this.emitter.emit("message", { meta, message: body.value });
        break;
      case "sync":
        // Only this account's own devices may tell it what it sent.
        if (fromSelf && body.value.sent !== undefined) {
          await this.emitter.emit("sync", {
            meta,
            destinationAccountId:
              body.value.destinationAccountId === "" ? undefined : body.value.destinationAccountId,
            message: body.value.sent,
          });
        }
        break;
      case "receipt":
        await this.emitter.emit("receipt", { meta, receipt: body.value });
        break;
      case "typing":
        await this.emitter.emit("typing", { meta, typing: body.value });
        break;
      default:
        // Unknown bodies come from newer clients; readers ignore what they do not know.
        break;
    }
    await this.exclusive(async () => {
      await this.store.state.removePending(pending.serverId);
      await this.store.flush();
    });
  }

  private async receiveLoop(): Promise<void> {
    let attempt = 0;
    try {
      for (const pending of await this.exclusive(() => this.store.state.listPending())) {
        await this.deliverPending(pending);
      }
    } catch (error) {
      await this.emitter.emit("error", { error, context: "replaying pending contents" });
    }
    while (this.running) {
      let subscription: ReceiveSubscription | undefined;
      try {
        subscription = this.transport.receive(
          this.receiveWindow === undefined ? {} : { window: this.receiveWindow },
        );
        this.subscription = subscription;
        for await (const event of subscription) {
          attempt = 0;
          if (event.kind === "envelope") {
            await this.processEnvelope(event.envelope);
            if (this.live && this.keysDirty) await this.maintainKeysQuietly();
          } else {
            this.live = true;
            await this.maintainKeysQuietly();
            await this.emitter.emit("queueEmpty", {});
          }
          if (!this.running) break;
        }
      } catch (error) {
        if (!this.running) break;
        await this.emitter.emit("error", { error, context: "receive" });
        if (isAppError(error) && error.reason === "DISPLACED") {
          this.running = false;
          break;
        }
        await new Promise<void>((resolve) => {
          // Full jitter: devices dropped together (a gateway restart) come back spread out.
          const timer = setTimeout(resolve, reconnectDelayMs(attempt++, this.reconnect));
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      } finally {
        subscription?.close();
        this.live = false;
      }
    }
  }

  private async maintainKeysQuietly(): Promise<void> {
    this.keysDirty = false;
    try {
      await this.maintainKeys();
    } catch (error) {
      await this.emitter.emit("error", { error, context: "key maintenance" });
    }
  }
}
