export { createDeliveryLink } from "./delivery-link.js";
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
