export { buildApp } from "./app.js";
export type { AppConfig, DeliveryApp } from "./app.js";
export { loadConfig, deliveryEnv } from "./config.js";
export type { DeliveryConfig, AppCredential } from "./config.js";
