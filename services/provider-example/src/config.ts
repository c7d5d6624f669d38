import { logEnv, parseEnv, port, secret, str, type EnvSource } from "@switchboard/config";

/** Acme Chat's environment, parsed once. */
export const acmeEnv = {
  ...logEnv,
  /** Interface the REST API binds. */
  HTTP_HOST: str({ default: "127.0.0.1" }),
  /** Port of the REST API. */
  HTTP_PORT: port(8090),
  /** The delivery service's gRPC address, host:port. */
  DELIVERY_TARGET: str({ default: "127.0.0.1:50051" }),
  /** This provider's registry id (`pnpm provider add <id>`); its users' handles carry it. */
  PROVIDER_ID: str({ default: "acme" }),
  /** The provider token `pnpm provider add` printed. Secret, no default. */
  PROVIDER_TOKEN: secret(),
};

/** Parses Acme Chat's environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => parseEnv(acmeEnv, env);

/** Acme Chat's parsed configuration. */
export type AcmeConfig = ReturnType<typeof loadConfig>;
