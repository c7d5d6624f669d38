// @switchboard/sdk: a Switchboard client with end-to-end encryption (libsignal). AGPL-3.0-only.
export { createClient, SwitchboardClient } from "./client.js";
export type {
  ClientOptions,
  DeviceLinkRequest,
  GroupSealedSender,
  GroupSendResult,
  KeyMaintenanceReport,
  MessageRequestPreview,
  MessageRequestReport,
  OutgoingData,
  OutgoingGroupData,
  RegisteredDevice,
  SafetyNumber,
  SendResult,
} from "./client.js";
export type { ClientEvents, EnvelopeMeta, Listener } from "./events.js";
export { recordEvents, type RecordedEvents } from "./record-events.js";
export type {
  AppCredentials,
  DeviceCredentials,
  GroupDeviceMismatch,
  GroupSendOutcome,
  ReceiveEvent,
  ReceiveOptions,
  ReceiveSubscription,
  RequestTarget,
  SendOutcome,
  Transport,
} from "./transport.js";
export { createDeliveryTransport, DeliveryTransport } from "./delivery-transport.js";
export type { DeliveryTransportOptions } from "./delivery-transport.js";
export { sendOutcomeFromProto, groupSendOutcomeFromProto } from "./outcomes.js";
export { basicAuthorization, bearerAuthorization } from "./credentials.js";
export { reconnectDelayMs, type BackoffBounds } from "./internal/backoff.js";
export { createMemoryStore, DataStore } from "./store/client-store.js";
export type {
  ClientStateStore,
  ClientStore,
  ProcessedRef,
  SdkKyberPreKeyStore,
  SdkSessionStore,
  SdkSignedPreKeyStore,
  StoreOptions,
} from "./store/client-store.js";
export { createFileStore } from "./store/file-store.js";
export type { GroupState, KeyState, LocalDevice, PendingContent, StoreData } from "./store/store-data.js";
export { decodeContent, encodeContent, CONTENT_VERSION, PADDING_BLOCK_BYTES } from "./content-codec.js";
export {
  deriveAccessKey,
  frankedPlaintext,
  frankingCommitment,
  frankMessage,
  generateProfileKey,
  FRANKING_KEY_BYTES,
} from "./safety.js";
export {
  createInstagramTransport,
  envelopeOfItem,
  InstagramTransport,
  type InstagramTransportOptions,
} from "./transports/instagram-transport.js";
export {
  createWhatsAppTransport,
  WhatsAppTransport,
  whatsAppTranslation,
  type WhatsAppSession,
  type WhatsAppTransportOptions,
  type WhatsAppUserJid,
} from "./transports/whatsapp-transport.js";
export * from "./transports/messenger-transport.js";
