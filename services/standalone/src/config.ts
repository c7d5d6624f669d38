import { databaseEnv, int, logEnv, parseEnv, port, redisEnv, str, type EnvSource } from "@switchboard/config";

/**
 * The standalone runner's environment. Without DATABASE_URL it uses embedded PostgreSQL in
 * DATA_DIR; without REDIS_URL an in-process fan-out bus. App tokens between the gateways and the
 * delivery service are generated at first start and kept in DATA_DIR (mode 0600).
 */
export const standaloneEnv = {
  ...databaseEnv,
  ...redisEnv,
  ...logEnv,
  /** Interface every service binds (use 0.0.0.0 to serve beyond this machine). */
  HOST: str({ default: "127.0.0.1" }),
  /** Embedded database and generated secrets live here. */
  DATA_DIR: str({ default: ".data" }),
  DELIVERY_GRPC_PORT: port(50051),
  DELIVERY_METRICS_PORT: port(9464),
  WHATSAPP_GRPC_PORT: port(50061),
  /** The WhatsApp-style gateway's dev admin endpoint (verification codes), on 127.0.0.1 only. */
  WHATSAPP_ADMIN_PORT: port(50062),
  MESSENGER_HTTP_PORT: port(8081),
  INSTAGRAM_HTTP_PORT: port(8082),
  /** Connect streams each gateway multiplexes its devices over. */
  DELIVERY_STREAMS: int({ min: 1, max: 64, default: 2 }),
  SHUTDOWN_GRACE_MS: int({ min: 0, default: 10_000 }),
};

/** Parses the standalone environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => parseEnv(standaloneEnv, env);

/** The parsed configuration. */
export type StandaloneConfig = ReturnType<typeof loadConfig>;
