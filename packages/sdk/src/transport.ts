// The transport-agnostic boundary between the client core and a server. The delivery service
// implements it over gRPC (DeliveryTransport); gateways can implement it over their own APIs.
import type {
  AddGroupMembersRequest,
  CreateGroupRequest,
  Envelope,
  GetAccountRequest,
  GetAccountResponse,
  GetGroupRequest,
  GetPreKeyBundlesRequest,
  GetPreKeyBundlesResponse,
  GetPreKeyCountRequest,
  GetPreKeyCountResponse,
  Group,
  MessageRequest,
  RegisterAccountRequest,
  RegisterAccountResponse,
  RegisterDeviceRequest,
  RegisterDeviceResponse,
  RemoveDeviceRequest,
  RemoveGroupMembersRequest,
  ReportMessageRequest,
  RequestsPolicy,
  ReportMessageResponse,
  ResolveHandleRequest,
  ResolveHandleResponse,
  SendGroupMessageRequest,
  SendMessageRequest,
  SendMultiRecipientMessageRequest,
  UploadKeysRequest,
  UploadKeysResponse,
} from "@switchboard/proto";

/** A device's own credential: its address and the password it registered with. */
export interface DeviceCredentials {
  accountId: string;
  deviceId: number;
  password: string;
}

/** An app credential (`Bearer <token>`), used where a gateway or provider acts for its accounts. */
export interface AppCredentials {
  appToken: string;
}

/** The outcome of a one-to-one send. Expected failures are cases, not errors. */
export type SendOutcome =
  | { kind: "sent"; messageId: string; serverTimestampMs: number; duplicate: boolean }
  | { kind: "mismatched"; accountId: string; missingDevices: number[]; extraDevices: number[] }
  | { kind: "stale"; accountId: string; staleDevices: number[] }
  | { kind: "not_found" };

/** One member account's device differences in a group send. */
export interface GroupDeviceMismatch {
  accountId: string;
  missingDevices: number[];
  extraDevices: number[];
  staleDevices: number[];
}

/** The outcome of a group send. */
export type GroupSendOutcome =
  | { kind: "sent"; messageId: string; serverTimestampMs: number; duplicate: boolean }
  | { kind: "mismatched"; accounts: GroupDeviceMismatch[] }
  | { kind: "not_a_member" };

/** One item of a receive subscription. */
export type ReceiveEvent =
  | { kind: "envelope"; envelope: Envelope }
  /** Everything queued before the subscription started has been delivered. */
  | { kind: "queue_empty" };

/**
 * A device's live queue. Iterate it to get envelopes in queue order; iteration ends when
 * `close()` is called and throws when the connection fails or another connection of the same
 * device displaces it (AppError ABORTED, reason DISPLACED). Unacknowledged envelopes are
 * redelivered on the next subscription.
 */
export interface ReceiveSubscription extends AsyncIterable<ReceiveEvent> {
  close(): void;
}

/** Options of `Transport.receive`. */
export interface ReceiveOptions {
  /** Maximum unacknowledged envelopes in flight (1..1000); the server default when unset. */
  window?: number;
}

/**
 * Everything the client core needs from a server, in terms of the delivery API's proto messages.
 * Device-authenticated calls act as the device set with `setDeviceCredentials`; calls fail with
 * AppError (codes and reasons as the server sent them).
 */
export interface Transport {
  /** Authenticates all later device calls as this device. */
  setDeviceCredentials(credentials: DeviceCredentials): void;
  /** Creates an account with its primary device. Needs an app credential. */
  registerAccount(request: RegisterAccountRequest, auth: AppCredentials): Promise<RegisterAccountResponse>;
  /** Links a device; with `auth` as the app, otherwise as the (primary) device. */
  registerDevice(request: RegisterDeviceRequest, auth?: AppCredentials): Promise<RegisterDeviceResponse>;
  /** Removes a linked device of the caller's account. */
  removeDevice(request: RemoveDeviceRequest): Promise<void>;
  uploadKeys(request: UploadKeysRequest): Promise<UploadKeysResponse>;
  getPreKeyBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse>;
  getPreKeyCount(request: GetPreKeyCountRequest): Promise<GetPreKeyCountResponse>;
  resolveHandle(request: ResolveHandleRequest): Promise<ResolveHandleResponse>;
  getAccount(request: GetAccountRequest): Promise<GetAccountResponse>;
  /** Sends one ciphertext per recipient device. Safe to retry with the same client_message_id. */
  sendMessage(request: SendMessageRequest): Promise<SendOutcome>;
  /** Sends one sender-key ciphertext to a group. Safe to retry with the same client_message_id. */
  sendGroupMessage(request: SendGroupMessageRequest): Promise<GroupSendOutcome>;
  createGroup(request: CreateGroupRequest): Promise<Group>;
  addGroupMembers(request: AddGroupMembersRequest): Promise<Group>;
  removeGroupMembers(request: RemoveGroupMembersRequest): Promise<Group>;
  getGroup(request: GetGroupRequest): Promise<Group>;
  /** Subscribes to the authenticated device's queue (displacing any other subscription of it). */
  receive(options?: ReceiveOptions): ReceiveSubscription;
  /** Acknowledges envelopes by id, removing them from the queue. Unknown ids are ignored. */
  ack(messageIds: string[]): Promise<void>;
  /**
   * Sets the authenticated device's account's opt-in to third-party providers (off by default;
   * docs/interop.md) and returns the stored value. Optional: transports without it make the
   * client fail UNIMPLEMENTED.
   */
  setThirdPartyReachable?(reachable: boolean): Promise<boolean>;
  /** Reads the account's opt-in to third-party providers. */
  getThirdPartyReachable?(): Promise<boolean>;
  /** Releases connections. Pending calls fail. */
  close(): Promise<void>;

  // Safety (docs/safety.md). Optional: transports that lack them make the client fail
  // UNIMPLEMENTED for reports and sealed sender.

  /** Reports a received message with its franking proof (ReportService.ReportMessage). */
  reportMessage?(request: ReportMessageRequest): Promise<ReportMessageResponse>;
  /** A sealed-sender certificate for the authenticated device. */
  getSenderCertificate?(): Promise<{ certificate: Uint8Array; expiresAtMs: number }>;
  /** The sealed-sender trust root public key (prefer a pinned one: ClientOptions.sealedSenderTrustRoot). */
  getSealedSenderTrustRoot?(): Promise<Uint8Array>;
  /** Sets the account's unidentified access (`undefined`: disable sealed sender). */
  setUnidentifiedAccess?(
    access: { accessKey?: Uint8Array; unrestricted?: boolean } | undefined,
  ): Promise<void>;
  /**
   * Sends a sealed-sender message authorised by the recipient's access key, without this
   * device's credentials (the server must not learn the sender). Safe to retry.
   */
  sendSealedMessage?(request: SendMessageRequest, accessKey: Uint8Array): Promise<SendOutcome>;
  /**
   * Sends a multi-recipient sealed-sender message (MessageService.SendMultiRecipientMessage)
   * authorised by the recipients' combined (XOR) access key, without this device's credentials.
   * Outcomes `sent` or `mismatched`. Safe to retry.
   */
  sendSealedMultiRecipientMessage?(
    request: SendMultiRecipientMessageRequest,
    combinedAccessKey: Uint8Array,
  ): Promise<GroupSendOutcome>;

  // Message requests (RequestService; docs/safety.md). Optional: transports that lack them make
  // the client fail UNIMPLEMENTED (REQUESTS_UNSUPPORTED).

  /** The authenticated device's pending requests, with its held envelopes. */
  listMessageRequests?(): Promise<MessageRequest[]>;
  /** Accepts a peer (or, with `groupId`, a group invitation); resolves with the released row count. */
  acceptMessageRequest?(target: RequestTarget): Promise<number>;
  /** Declines a peer's request (or a group invitation); resolves with the deleted row count. */
  declineMessageRequest?(target: RequestTarget): Promise<number>;
  /** Blocks an account. */
  block?(peerAccountId: string): Promise<void>;
  /** Unblocks an account. */
  unblock?(peerAccountId: string): Promise<void>;
  /** Sets how messages from strangers arrive for the account. */
  setRequestsPolicy?(policy: RequestsPolicy): Promise<void>;
}

/** What a request call names: a peer account, or a group invitation. */
export type RequestTarget = { peerAccountId: string } | { groupId: string };
