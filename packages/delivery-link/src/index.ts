export { createDeliveryLink } from "./delivery-link.js";
// MessageService's hand-written codecs, for other clients of it (the load generator's unary sends).
export { messageServiceCodecs } from "./connect-codec.js";
export type {
  DeliveryLink,
  DeliveryLinkOptions,
  DeviceAddress,
  DeviceListener,
  DeviceSubscription,
} from "./delivery-link.js";
// TLS credentials for the link's channel (DELIVERY_TLS_CA_FILE and friends), re-exported so that
// gateways need no direct @switchboard/grpc dependency.
export { channelTlsCredentials } from "@switchboard/grpc";
export type { ChannelTlsFiles } from "@switchboard/grpc";
// Faster protobuf string encoding for the gateway's process (call once from main.ts).
export { useBufferTextEncoding } from "@switchboard/grpc";
