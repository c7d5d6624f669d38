// The boundary between the load generator and the system under test. The delivery drivers talk
// to the delivery service's gRPC API; the gateway driver talks to the WhatsApp-, Messenger- and
// Instagram-style gateways' native APIs (each account through its own app's gateway).
import type { AppName } from "../topology.js";

/** A registered device as the system knows it. */
export interface DeviceRef {
  app: AppName;
  accountId: string;
  deviceId: number;
  registrationId: number;
  /** The account's app-native handle (gateway mode: how other apps address it). */
  handle?: string;
  /**
   * The device's own credential where the driver signs in as the device (gateway mode: a device
   * token, or the device secret for the Instagram-style gateway). Undefined with app tokens.
   */
  secret?: string;
}

/** Creates an account with its primary device. */
export interface RegisterAccountRequest {
  app: AppName;
  /** The app-native handle (E.164, numeric id or username). */
  handle: string;
  registrationId: number;
  /** The device secret, 16-128 bytes. */
  password: string;
}

/** Links a further device to an account. */
export interface RegisterDeviceRequest {
  app: AppName;
  accountId: string;
  registrationId: number;
  password: string;
}

/** The result of a send: Sent, or why not (an error code and reason, or a non-Sent outcome). */
export type SendResult =
  | { ok: true; messageId: string }
  | {
      ok: false;
      /** A gRPC code name (`UNAVAILABLE`), or `OUTCOME` for an expected non-Sent outcome. */
      code: string;
      /** The server's reason (`RECIPIENT_QUEUE_FULL`) or the outcome (`MISMATCHED_DEVICES`). */
      reason: string;
    };

/** One ciphertext for one recipient device. */
export interface DeviceCopy {
  deviceId: number;
  registrationId: number;
  /** A Double Ratchet message, or a pre-key message that starts a session. */
  type: "ciphertext" | "prekey";
  content: Uint8Array;
}

/** A one-to-one send: one copy per device of the recipient account. */
export interface DirectMessage {
  sender: DeviceRef;
  recipientAccountId: string;
  /** The recipient account's primary device (its app and handle, for gateway addressing). */
  recipient: DeviceRef;
  copies: DeviceCopy[];
  /** The sender's idempotency key (1-64 bytes). */
  clientMessageId: string;
  clientTimestampMs: number;
  /** Ask for no server delivery receipt (SendMessageRequest.no_delivery_receipt). */
  noDeliveryReceipt: boolean;
}

/** A group send: one (sender-key) ciphertext fanned out by the server. */
export interface GroupMessage {
  sender: DeviceRef;
  groupId: string;
  content: Uint8Array;
  clientMessageId: string;
  clientTimestampMs: number;
}

/** A message delivered to a device. */
export interface IncomingMessage {
  /** The server's message id (what de-duplication and acknowledgement use). */
  envelopeId: string;
  /** A message sent by a device, or a server-generated delivery receipt. */
  kind: "message" | "receipt";
  content: Uint8Array;
  /** The sender's client message id (for a receipt: of the message it acknowledges). */
  clientMessageId: string;
}

/** Receives one device's traffic, in delivery order. */
export interface DeviceListener {
  /** One delivery; the driver acknowledges it after this returns. */
  onMessage(message: IncomingMessage): void;
  /** The device's stored backlog has been delivered (again after a reconnect). */
  onQueueEmpty(): void;
  /** The subscription failed or was displaced (it may come back after a reconnect). */
  onError(code: string, reason: string): void;
}

/** A way to drive the system under test. */
export interface Driver {
  /** The `--mode` this driver implements. */
  readonly mode: string;
  /** Registers an account; `handle` is the handle the system gave it, `secret` the device's credential. */
  registerAccount(
    req: RegisterAccountRequest,
  ): Promise<{ accountId: string; handle?: string; secret?: string }>;
  /** Links a device; `secret` is the new device's own credential where the driver needs one. */
  registerDevice(req: RegisterDeviceRequest): Promise<{ deviceId: number; secret?: string }>;
  /** Creates a group of `requester`'s account and the accounts of `members` (primary devices); returns its id. */
  createGroup(requester: DeviceRef, members: DeviceRef[]): Promise<string>;
  /**
   * Optional setup after registration: makes `device` ready to exchange messages with the
   * accounts of `peers` (primary devices), e.g. resolve their addresses or accept them as
   * contacts (the Instagram-style gateway holds messages from strangers as message requests).
   * With a reused population, what the system remembers (accepted contacts) is already done.
   */
  introduce?(device: DeviceRef, peers: DeviceRef[], opts: { reusedPopulation: boolean }): Promise<void>;
  /** Sends that were retried after a transient failure (same client message id), so far. */
  readonly retries?: number;
  /** Device subscriptions re-opened after a transient failure, so far. */
  readonly reconnects?: number;
  /** Starts delivering a device's queue to `listener` (acknowledging what it receives). */
  subscribe(device: DeviceRef, listener: DeviceListener): void;
  sendDirect(message: DirectMessage): Promise<SendResult>;
  sendGroup(message: GroupMessage): Promise<SendResult>;
  /** Sends every pending acknowledgement now. */
  flushAcks(): Promise<void>;
  /** Ends every stream and connection. */
  close(): Promise<void>;
}
