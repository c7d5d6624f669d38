export { createLogger, REDACT_PATHS } from "./create-logger.js";
export type { LoggerOptions } from "./create-logger.js";
export type { Logger } from "pino";
