export { startSystem } from "./system.js";
export type { Endpoints, System } from "./system.js";
export { loadConfig, standaloneEnv } from "./config.js";
export type { StandaloneConfig } from "./config.js";
