import {
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

/** The Instagram-style gateway's environment, parsed once. Every variable is listed in `.env.example`. */
export const gatewayEnv = {
  ...databaseEnv,
  ...logEnv,
  /** TLS of the HTTPS listener (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE; unset = plaintext). */
  ...tlsEnv,
  /** TLS to the delivery service (DELIVERY_TLS_CA_FILE, DELIVERY_TLS_CERT_FILE, DELIVERY_TLS_KEY_FILE; unset = plaintext). */
  ...deliveryTlsEnv,
  /** Interface the HTTP server binds. */
  HTTP_HOST: str({ default: "0.0.0.0" }),
  /** HTTP port of the native API (and /openapi.json). */
  HTTP_PORT: port(8082),
  /** The delivery service, host:port. */
  DELIVERY_TARGET: str({ default: "127.0.0.1:50051" }),
  /** This gateway's app credential at the delivery service (its `instagram=` APP_TOKENS entry). */
  DELIVERY_APP_TOKEN: secret(),
  /** Connect streams to the delivery service that all connected devices are multiplexed over. */
  DELIVERY_STREAMS: int({ min: 1, max: 64, default: 2 }),
  /** Largest accepted request body (a send carries one base64 ciphertext per recipient device). */
  MAX_BODY_BYTES: int({ min: 64 * 1024, max: 64 * 1024 * 1024, default: 4 * 1024 * 1024 }),
};

/** Parses the gateway environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => parseEnv(gatewayEnv, env);

/** The gateway's parsed configuration. */
export type GatewayConfig = ReturnType<typeof loadConfig>;
