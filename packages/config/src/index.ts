export { ConfigError } from "./config-error.js";
export { databaseEnv, deliveryTlsEnv, logEnv, redisEnv, tlsEnv, LOG_LEVELS } from "./env-fragments.js";
export { EXIT_CONFIG, loadOrExit } from "./load-or-exit.js";
export { parseEnv } from "./parse-env.js";
export type { EnvOf, EnvSource, EnvSpec } from "./parse-env.js";
export { bool, enumOf, int, port, secret, str, url } from "./parsers.js";
export type { EnvVar, IntOptions, ParseResult, StrOptions, UrlOptions } from "./parsers.js";
