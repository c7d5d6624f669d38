import { loadOrExit } from "@switchboard/config";
import { readFileSync } from "node:fs";
import { channelTlsCredentials, createDeliveryLink, useBufferTextEncoding } from "@switchboard/delivery-link";
import { createLogger } from "@switchboard/logger";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { createGatewayDatabase, migrateGatewayDatabase } from "./storage/database.js";
import { VERSION } from "./version.js";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "gateway-messenger", version: VERSION, level: config.LOG_LEVEL });
useBufferTextEncoding();

if (!config.DATABASE_URL) {
  log.fatal({}, "DATABASE_URL is required");
  process.exit(78);
}
const db = createGatewayDatabase({
  url: config.DATABASE_URL,
  poolSize: config.DATABASE_POOL_SIZE,
  onPoolError: (err) => log.warn({ err }, "idle database connection failed"),
});
if (config.MIGRATE_ON_START) {
  const applied = await migrateGatewayDatabase(db);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
}
/** HTTPS of the listener (TLS_*) and TLS of the link to delivery (DELIVERY_TLS_*); exits on a bad setup. */
function tlsSetup() {
  try {
    if (Boolean(config.TLS_CERT_FILE) !== Boolean(config.TLS_KEY_FILE))
      throw new Error("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
    if (config.TLS_CLIENT_CA_FILE && !config.TLS_CERT_FILE)
      throw new Error("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
    const https =
      config.TLS_CERT_FILE && config.TLS_KEY_FILE
        ? {
            cert: readFileSync(config.TLS_CERT_FILE),
            key: readFileSync(config.TLS_KEY_FILE),
            ...(config.TLS_CLIENT_CA_FILE ? { ca: readFileSync(config.TLS_CLIENT_CA_FILE) } : {}),
          }
        : undefined;
    const link = channelTlsCredentials({
      caFile: config.DELIVERY_TLS_CA_FILE,
      certFile: config.DELIVERY_TLS_CERT_FILE,
      keyFile: config.DELIVERY_TLS_KEY_FILE,
    });
    return { https, link };
  } catch (err) {
    log.fatal({ err }, "invalid TLS configuration");
    process.exit(78);
  }
}
const tls = tlsSetup();
log.info({ https: tls.https ? "on" : "off", deliveryTls: tls.link ? "on" : "off" }, "transport");

const link = createDeliveryLink({
  target: config.DELIVERY_TARGET,
  credentials: tls.link,
  appToken: config.DELIVERY_APP_TOKEN,
  streams: config.DELIVERY_STREAMS,
  log: log.child({ component: "delivery-link" }),
});
const app = await buildApp({ config, db, link, log, https: tls.https });
const address = await app.http.listen({ host: config.HTTP_HOST, port: config.HTTP_PORT });
log.info({ address, delivery: config.DELIVERY_TARGET }, "gateway-messenger listening");

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  const timer = setTimeout(() => {
    log.warn({}, "shutdown grace period exceeded");
    process.exit(1);
  }, config.SHUTDOWN_GRACE_MS);
  timer.unref();
  // WebSockets close first (clients reconnect elsewhere; unacknowledged messages stay queued).
  await app.close();
  await link.close();
  await db.destroy();
  log.info({}, "stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
