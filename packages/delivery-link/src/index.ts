export { createDeliveryLink } from "./delivery-link.js";
export type {
  DeliveryLink,
  DeliveryLinkOptions,
  DeviceAddress,
  DeviceListener,
  DeviceSubscription,
} from "./delivery-link.js";
