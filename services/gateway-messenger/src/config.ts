import {
  bool,
  databaseEnv,
  deliveryTlsEnv,
  int,
  logEnv,
  parseEnv,
  port,
  secret,
  str,
  tlsEnv,
  type EnvSource,
} from "@switchboard/config";

/** The Messenger-style gateway's environment, parsed once. Every variable is listed in `.env.example`. */
export const gatewayMessengerEnv = {
  ...databaseEnv,
  ...logEnv,
  /** TLS of the HTTPS listener (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE; unset = plaintext). */
  ...tlsEnv,
  /** TLS to the delivery service (DELIVERY_TLS_CA_FILE, DELIVERY_TLS_CERT_FILE, DELIVERY_TLS_KEY_FILE; unset = plaintext). */
  ...deliveryTlsEnv,
  /** Interface the HTTP server binds. */
  HTTP_HOST: str({ default: "0.0.0.0" }),
  /** HTTP port of the native API (REST, WebSocket, /openapi.json). */
  HTTP_PORT: port(8081),
  /** The delivery service, `host:port`. */
  DELIVERY_TARGET: str({ default: "127.0.0.1:50051" }),
  /** This gateway's app credential (the `messenger=` entry of the delivery service's APP_TOKENS). */
  DELIVERY_APP_TOKEN: secret(),
  /** Connect streams to the delivery service that this instance multiplexes its devices over. */
  DELIVERY_STREAMS: int({ min: 1, max: 64, default: 2 }),
  /** Largest accepted request body. */
  MAX_BODY_BYTES: int({ min: 1024, max: 64 * 1024 * 1024, default: 1024 * 1024 }),
  /** WebSocket ping interval; a socket that missed the previous pong is dropped. */
  WS_HEARTBEAT_MS: int({ min: 1_000, default: 30_000 }),
  /** Most bytes one WebSocket may hold unsent (a client not reading); beyond it the socket is dropped. */
  WS_MAX_BUFFERED_BYTES: int({ min: 64 * 1024, default: 8 * 1024 * 1024 }),
  /** Apply the gateway's ms_* migrations at start. */
  MIGRATE_ON_START: bool({ default: true }),
  /** Graceful-shutdown budget for in-flight requests. */
  SHUTDOWN_GRACE_MS: int({ min: 0, default: 10_000 }),
};

/** Parses the gateway's environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => parseEnv(gatewayMessengerEnv, env);

/** The gateway's parsed configuration. */
export type GatewayMessengerConfig = ReturnType<typeof loadConfig>;
