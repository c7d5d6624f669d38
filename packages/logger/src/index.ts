export { createLogger } from "./create-logger.js";
export { CENSOR, redact, REDACT_PATHS, REDACTED_KEYS } from "./redact.js";
export type { LoggerOptions } from "./create-logger.js";
export type { Logger } from "pino";
