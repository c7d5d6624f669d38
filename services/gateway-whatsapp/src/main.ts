import { loadOrExit } from "@switchboard/config";
import { channelTlsCredentials, createDeliveryLink } from "@switchboard/delivery-link";
import { serverTlsCredentials, useBufferTextEncoding } from "@switchboard/grpc";
import { createLogger } from "@switchboard/logger";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { createWaDatabase, migrateWaDatabase } from "./storage/database.js";

const VERSION = "0.1.0";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "gateway-whatsapp", version: VERSION, level: config.LOG_LEVEL });
useBufferTextEncoding();

if (!config.DATABASE_URL) {
  log.fatal({}, "DATABASE_URL is required");
  process.exit(78);
}
const db = createWaDatabase({
  url: config.DATABASE_URL,
  poolSize: config.DATABASE_POOL_SIZE,
  onPoolError: (err) => log.warn({ err }, "idle database connection failed"),
});
if (config.MIGRATE_ON_START) {
  const applied = await migrateWaDatabase(db);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
}

/** TLS of the listener (TLS_*) and of the link to delivery (DELIVERY_TLS_*); exits on a bad setup. */
function tlsSetup() {
  try {
    return {
      server: serverTlsCredentials({
        certFile: config.TLS_CERT_FILE,
        keyFile: config.TLS_KEY_FILE,
        clientCaFile: config.TLS_CLIENT_CA_FILE,
      }),
      link: channelTlsCredentials({
        caFile: config.DELIVERY_TLS_CA_FILE,
        certFile: config.DELIVERY_TLS_CERT_FILE,
        keyFile: config.DELIVERY_TLS_KEY_FILE,
      }),
    };
  } catch (err) {
    log.fatal({ err }, "invalid TLS configuration");
    process.exit(78);
  }
}
const tls = tlsSetup();
log.info({ tls: tls.server ? "on" : "off", deliveryTls: tls.link ? "on" : "off" }, "grpc transport");

const link = createDeliveryLink({
  target: config.DELIVERY_TARGET,
  credentials: tls.link,
  appToken: config.DELIVERY_APP_TOKEN,
  streams: config.DELIVERY_STREAMS,
  log: log.child({ component: "delivery-link" }),
});

const app = buildApp({ db, link, log, credentials: tls.server });
await app.listen({
  host: config.GRPC_HOST,
  port: config.GRPC_PORT,
  metricsPort: config.METRICS_PORT === 0 ? undefined : config.METRICS_PORT,
  adminPort: config.DEV_ADMIN ? config.ADMIN_PORT : undefined,
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  await app.close(config.SHUTDOWN_GRACE_MS);
  await link.close();
  await db.destroy();
  log.info({}, "stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
