// @switchboard/gateway-messenger: the Messenger-style front door (HTTP/JSON + WebSocket).
export { buildApp } from "./app.js";
export type { AppConfig, GatewayApp } from "./app.js";
export { loadConfig, gatewayMessengerEnv } from "./config.js";
export type { GatewayMessengerConfig } from "./config.js";
export { createGatewayDatabase, migrateGatewayDatabase, migrateGatewayUrl } from "./storage/database.js";
export type { GatewayDatabase } from "./storage/schema.js";
