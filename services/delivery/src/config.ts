import {
  bool,
  ConfigError,
  databaseEnv,
  enumOf,
  int,
  logEnv,
  parseEnv,
  port,
  redisEnv,
  str,
  tlsEnv,
  type EnvVar,
  type EnvSource,
} from "@switchboard/config";
import { App } from "@switchboard/proto";

const APP_NAMES: Record<string, App> = {
  whatsapp: App.WHATSAPP,
  messenger: App.MESSENGER,
  instagram: App.INSTAGRAM,
};

/** An app credential: a bearer token that lets a gateway act for accounts of one app. */
export interface AppCredential {
  app: App;
  /** For third-party providers: the provider id; empty for our own apps. */
  providerId: string;
  token: string;
}

/**
 * `APP_TOKENS`: comma-separated `app=token` pairs (`whatsapp=…,messenger=…,instagram=…`, or
 * `provider:acme=…` for a third-party provider). Tokens are secrets: at least 16 characters, never
 * echoed in errors, no default.
 */
const appTokens: EnvVar<AppCredential[]> = {
  fallback: undefined,
  parse: (raw) => {
    const out: AppCredential[] = [];
    for (const pair of raw
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean)) {
      const eq = pair.indexOf("=");
      const name = eq > 0 ? pair.slice(0, eq) : "";
      const token = eq > 0 ? pair.slice(eq + 1) : "";
      if (name.startsWith("provider:")) {
        const providerId = name.slice("provider:".length);
        if (!/^[a-z0-9][a-z0-9-]{0,31}$/.test(providerId))
          return { ok: false, problem: `invalid provider id in "${name}"` };
        if (token.length < 16)
          return { ok: false, problem: `token for ${name} must be at least 16 characters` };
        out.push({ app: App.THIRD_PARTY, providerId, token });
        continue;
      }
      const app = APP_NAMES[name];
      if (app === undefined)
        return {
          ok: false,
          problem: `expected app=token pairs with app one of whatsapp, messenger, instagram, provider:<id>; got app "${name}"`,
        };
      if (token.length < 16)
        return { ok: false, problem: `token for ${name} must be at least 16 characters` };
      out.push({ app, providerId: "", token });
    }
    if (out.length === 0) return { ok: false, problem: "expected at least one app=token pair" };
    return { ok: true, value: out };
  },
};

/** `MODERATOR_TOKEN`: optional; when set, a secret of at least 16 characters (never echoed). */
const moderatorToken: EnvVar<string | undefined> = {
  fallback: { value: undefined },
  parse: (raw) =>
    raw.length < 16 ? { ok: false, problem: "must be at least 16 characters" } : { ok: true, value: raw },
};

/** The delivery service's environment, parsed once. Every variable is listed in `.env.example`. */
export const deliveryEnv = {
  ...databaseEnv,
  ...redisEnv,
  ...logEnv,
  /** TLS of the gRPC listener (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE; unset = plaintext). */
  ...tlsEnv,
  /** Interface the gRPC server binds. */
  GRPC_HOST: str({ default: "0.0.0.0" }),
  GRPC_PORT: port(50051),
  /** Prometheus metrics and /healthz on this HTTP port (0 disables). */
  METRICS_PORT: port(9464),
  APP_TOKENS: appTokens,
  /** Name of this instance in logs and metrics (default: host name and pid). */
  INSTANCE_ID: str({ optional: true }),
  /** Largest accepted ciphertext per device message. */
  MAX_CIPHERTEXT_BYTES: int({ min: 1024, max: 4 * 1024 * 1024, default: 256 * 1024 }),
  /** How long a queued message is kept undelivered before it expires. */
  QUEUE_TTL_SECONDS: int({ min: 60, default: 30 * 24 * 3600 }),
  /** Most messages queued for one device; further sends fail RESOURCE_EXHAUSTED (RECIPIENT_QUEUE_FULL). */
  MAX_QUEUE_LENGTH: int({ min: 10, default: 10_000 }),
  /** Most sends committed in one transaction. */
  SEND_BATCH_MAX: int({ min: 1, max: 5_000, default: 2_000 }),
  /**
   * Parallel commit lanes (sends to one recipient always use the same lane, keeping order). Each
   * statement costs a round trip whose fixed cost (two process wake-ups, parse/bind, a commit)
   * is large next to a row's: one lane gives the largest batches and the fewest statements, and
   * measured faster than two or four, at high and at moderate rates (docs/benchmarks.md).
   */
  SEND_LANES: int({ min: 1, max: 64, default: 1 }),
  /** Most acks removed in one transaction. */
  ACK_BATCH_MAX: int({ min: 1, max: 10_000, default: 2_000 }),
  /**
   * How long (ms) an acknowledgement arriving at an idle ack pipeline waits for others before
   * its DELETE starts: at low rates one statement (and one receipt commit) per handful of acks
   * instead of per ack. Acks free the stream's window at once; only the removal waits. 0: none.
   */
  ACK_LINGER_MS: int({ min: 0, max: 1_000, default: 5 }),
  /**
   * How wake-ups are published on classic Redis: `batched` (one message per commit batch on the
   * shared events channel) or `per-device` (one per device channel, as before batching; use it
   * while instances of an older version still run).
   */
  FANOUT_PUBLISH_MODE: enumOf(["batched", "per-device"], { default: "batched" }),
  /**
   * Prefix of every Redis key and channel (fan-out channels and rate-limit buckets). Instances of
   * one deployment share it; separate deployments (or test runs) on one Redis each need their own:
   * every instance receives every batch published on its `events` channel, and rate-limit buckets
   * are keyed by handles and devices that another deployment may reuse. No `{` or `}`.
   */
  REDIS_KEY_PREFIX: str({ default: "" }),
  /** A live stream that heard no wake-up for this long checks its queue, in case one was lost. */
  STREAM_POLL_MS: int({ min: 100, default: 15_000 }),
  /** Devices per account, including the primary. */
  MAX_DEVICES: int({ min: 1, max: 100, default: 6 }),
  /** Most members of a group. */
  MAX_GROUP_MEMBERS: int({ min: 2, max: 10_000, default: 1_000 }),
  /** Graceful-shutdown budget for in-flight sends and streams. */
  SHUTDOWN_GRACE_MS: int({ min: 0, default: 10_000 }),
  /** Sends per second per sender device (burst: five seconds' worth). */
  RATE_SEND_PER_SECOND: int({ min: 1, default: 200 }),
  /** Sends per second per sender device to one recipient account or group (burst: five seconds' worth). */
  RATE_PAIR_PER_SECOND: int({ min: 1, default: 100 }),
  /** Pre-key bundles an account may fetch per minute (also the burst). */
  RATE_PREKEYS_PER_MINUTE: int({ min: 1, default: 120 }),
  /** Registration attempts per handle per hour. */
  RATE_REGISTER_PER_HOUR: int({ min: 1, default: 20 }),
  /** New conversations (first messages to accounts with no relationship either way) per sender account per hour (also the burst). */
  RATE_NEW_CONVERSATIONS_PER_HOUR: int({ min: 1, default: 200 }),
  /** Chats a sender account may send forwarded content to at once (the bucket's burst). */
  RATE_FORWARDED_CHATS_BURST: int({ min: 1, default: 5 }),
  /** Chats per hour a sender account may send forwarded content to (the bucket's refill). */
  RATE_FORWARDED_CHATS_PER_HOUR: int({ min: 1, default: 60 }),
  /** Without DATABASE_URL: the embedded PostgreSQL (PGlite) data directory, kept across restarts. */
  DATA_DIR: str({ default: ".data/pglite" }),
  /**
   * Message-franking server secret (base64, at least 32 bytes). Unset: generated on first start
   * and shared by all instances through the `server_keys` table.
   */
  FRANKING_SECRET: str({ optional: true }),
  /** Sealed-sender trust root private key (base64 libsignal PrivateKey). Unset: generated as above. */
  SEALED_SENDER_TRUST_ROOT_KEY: str({ optional: true }),
  /** Sealed-sender server certificate private key (base64 libsignal PrivateKey). Unset: generated as above. */
  SEALED_SENDER_SERVER_KEY: str({ optional: true }),
  /**
   * The operator's moderator credential (issue 9): `Bearer <token>` on ModerationService calls.
   * A secret, at least 16 characters, no default; unset, the moderation API admits nobody. Only
   * its SHA-256 is kept in memory; it is never stored.
   */
  MODERATOR_TOKEN: moderatorToken,
  /** Apply database migrations at start (compose runs them once in a dedicated job instead). */
  MIGRATE_ON_START: bool({ default: true }),
};

/** Parses the delivery environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => {
  const config = parseEnv(deliveryEnv, env);
  if (
    config.MODERATOR_TOKEN !== undefined &&
    config.APP_TOKENS.some((c) => c.token === config.MODERATOR_TOKEN)
  )
    throw new ConfigError(["MODERATOR_TOKEN: must differ from every APP_TOKENS token"]);
  return config;
};

/** The delivery service's parsed configuration. */
export type DeliveryConfig = ReturnType<typeof loadConfig>;
