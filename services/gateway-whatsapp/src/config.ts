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

/** The WhatsApp-style gateway's environment, parsed once. Every variable is listed in `.env.example`. */
export const gatewayEnv = {
  ...databaseEnv,
  ...logEnv,
  /** TLS of the gRPC listener (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE; unset = plaintext). */
  ...tlsEnv,
  /** TLS to the delivery service (DELIVERY_TLS_CA_FILE, DELIVERY_TLS_CERT_FILE, DELIVERY_TLS_KEY_FILE; unset = plaintext). */
  ...deliveryTlsEnv,
  /** Interface the gRPC server binds. */
  GRPC_HOST: str({ default: "0.0.0.0" }),
  /** The native gRPC API (WhatsAppService, health, reflection). */
  GRPC_PORT: port(50061),
  /** Prometheus `/metrics` and `/healthz` over HTTP on GRPC_HOST:METRICS_PORT (0 disables). */
  METRICS_PORT: port(9465),
  /** The delivery service, `host:port`. */
  DELIVERY_TARGET: str({ default: "127.0.0.1:50051" }),
  /** The whatsapp app token (the delivery service's APP_TOKENS `whatsapp=` entry). Secret. */
  DELIVERY_APP_TOKEN: secret(),
  /** Connect streams to the delivery service that all connected devices are multiplexed over. */
  DELIVERY_STREAMS: int({ min: 1, max: 64, default: 2 }),
  /** Development only: serve `GET /admin/codes/:phone` (last verification code) on 127.0.0.1:ADMIN_PORT. */
  DEV_ADMIN: bool({ default: false }),
  /** Port of the dev admin endpoint (127.0.0.1 only; used when DEV_ADMIN=true). */
  ADMIN_PORT: port(50062),
  /** Apply the gateway's database migrations (its `wa_*` tables) at start. */
  MIGRATE_ON_START: bool({ default: true }),
  /** Graceful-shutdown budget for in-flight calls. */
  SHUTDOWN_GRACE_MS: int({ min: 0, default: 10_000 }),
};

/** Parses the gateway environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => parseEnv(gatewayEnv, env);

/** The gateway's parsed configuration. */
export type GatewayConfig = ReturnType<typeof loadConfig>;
