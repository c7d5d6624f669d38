import { hostname } from "node:os";
import { loadOrExit } from "@switchboard/config";
import {
  createMemoryFanout,
  createRedisClusterFanout,
  createRedisFanout,
  type Fanout,
} from "@switchboard/fanout";
import { serverTlsCredentials, useBufferTextEncoding } from "@switchboard/grpc";
import { createLogger } from "@switchboard/logger";
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from "@switchboard/ratelimit";
import { createDatabase, createEmbeddedDatabase, migrateToLatest } from "@switchboard/storage";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";

const VERSION = "0.1.0";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "delivery", version: VERSION, level: config.LOG_LEVEL });
useBufferTextEncoding();
const instance = config.INSTANCE_ID ?? `${hostname()}-${process.pid}`;

const embedded = !config.DATABASE_URL;
const db = config.DATABASE_URL
  ? createDatabase({
      url: config.DATABASE_URL,
      poolSize: config.DATABASE_POOL_SIZE,
      applicationName: `delivery-${instance}`,
      onPoolError: (err) => log.warn({ err }, "idle database connection failed"),
    })
  : await createEmbeddedDatabase({ dataDir: config.DATA_DIR });
if (embedded) {
  log.warn(
    { dataDir: config.DATA_DIR },
    "DATABASE_URL not set: using embedded PostgreSQL (PGlite, one process)",
  );
}
if (config.MIGRATE_ON_START) {
  const applied = await migrateToLatest(db);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
}

let fanout: Fanout;
let limiter: RateLimiter;
if (config.REDIS_CLUSTER_NODES) {
  const nodes = config.REDIS_CLUSTER_NODES.split(",").map((n) => {
    const [host, port] = n.trim().split(":");
    return { host: host ?? "127.0.0.1", port: Number(port ?? 6379) };
  });
  fanout = await createRedisClusterFanout({ nodes, log, keyPrefix: config.REDIS_KEY_PREFIX });
  limiter = createRedisRateLimiter({ nodes, keyPrefix: config.REDIS_KEY_PREFIX });
} else if (config.REDIS_URL) {
  fanout = await createRedisFanout({
    url: config.REDIS_URL,
    log,
    keyPrefix: config.REDIS_KEY_PREFIX,
    publishMode: config.FANOUT_PUBLISH_MODE,
  });
  limiter = createRedisRateLimiter({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX });
} else {
  log.warn({}, "REDIS_URL not set: using the in-process fan-out bus and rate limits (single instance only)");
  fanout = createMemoryFanout();
  limiter = createMemoryRateLimiter();
}

// PGlite runs one transaction at a time: one lane gives the largest group commits.
const app = buildApp({
  config: { ...config, INSTANCE_ID: instance, SEND_LANES: embedded ? 1 : config.SEND_LANES },
  db,
  fanout,
  limiter,
  log,
  credentials: tlsCredentials(),
});
await app.listen({
  host: config.GRPC_HOST,
  port: config.GRPC_PORT,
  metricsPort: config.METRICS_PORT === 0 ? undefined : config.METRICS_PORT,
});

/** The gRPC listener's TLS from TLS_CERT_FILE/TLS_KEY_FILE/TLS_CLIENT_CA_FILE; exits on a bad setup. */
function tlsCredentials() {
  try {
    const credentials = serverTlsCredentials({
      certFile: config.TLS_CERT_FILE,
      keyFile: config.TLS_KEY_FILE,
      clientCaFile: config.TLS_CLIENT_CA_FILE,
    });
    log.info(
      { tls: credentials ? (config.TLS_CLIENT_CA_FILE ? "mutual" : "server") : "off" },
      "grpc transport",
    );
    return credentials;
  } catch (err) {
    log.fatal({ err }, "invalid TLS configuration");
    process.exit(78);
  }
}

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  await app.close(config.SHUTDOWN_GRACE_MS);
  await fanout.close();
  await limiter.close();
  await db.destroy();
  log.info({}, "stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
