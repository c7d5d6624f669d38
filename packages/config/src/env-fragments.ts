import { bool, enumOf, int, str, url } from "./parsers.js";

/** Postgres: `DATABASE_URL` (optional, postgres:/postgresql:) and `DATABASE_POOL_SIZE` (default 10). */
export const databaseEnv = Object.freeze({
  DATABASE_URL: url({ protocols: ["postgres:", "postgresql:"], optional: true }),
  DATABASE_POOL_SIZE: int({ min: 1, default: 10 }),
});

/** Redis: `REDIS_URL` (optional, redis:/rediss:) and `REDIS_CLUSTER_NODES` (optional, comma-separated host:port). */
export const redisEnv = Object.freeze({
  REDIS_URL: url({ protocols: ["redis:", "rediss:"], optional: true }),
  REDIS_CLUSTER_NODES: str({ optional: true }),
});

/** The log levels `LOG_LEVEL` accepts, which are pino's levels plus `silent`. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/** Logging: `LOG_LEVEL` (default info) and `LOG_PRETTY` (default false). */
export const logEnv = Object.freeze({
  LOG_LEVEL: enumOf(LOG_LEVELS, { default: "info" }),
  LOG_PRETTY: bool({ default: false }),
});

/**
 * TLS for a service's own listener (gRPC or HTTPS): `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM paths,
 * both or neither; unset = plaintext, for private networks) and `TLS_CLIENT_CA_FILE` (optional:
 * PEM CA bundle; when set, clients must present a certificate it signed, i.e. mutual TLS).
 */
export const tlsEnv = Object.freeze({
  TLS_CERT_FILE: str({ optional: true }),
  TLS_KEY_FILE: str({ optional: true }),
  TLS_CLIENT_CA_FILE: str({ optional: true }),
});

/**
 * TLS of a gateway's connection to the delivery service: `DELIVERY_TLS_CA_FILE` (PEM CA bundle
 * that signed delivery's certificate; setting it turns TLS on, unset = plaintext) and, for a
 * delivery service that requires client certificates, `DELIVERY_TLS_CERT_FILE` and
 * `DELIVERY_TLS_KEY_FILE` (both or neither).
 */
export const deliveryTlsEnv = Object.freeze({
  DELIVERY_TLS_CA_FILE: str({ optional: true }),
  DELIVERY_TLS_CERT_FILE: str({ optional: true }),
  DELIVERY_TLS_KEY_FILE: str({ optional: true }),
});
