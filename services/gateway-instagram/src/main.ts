import { loadOrExit } from "@switchboard/config";
import { readFileSync } from "node:fs";
import { channelTlsCredentials, createDeliveryLink, useBufferTextEncoding } from "@switchboard/delivery-link";
import { createLogger } from "@switchboard/logger";
import { createDatabase } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { migrateGateway } from "./storage/migrate.js";
import type { IgDatabase } from "./storage/schema.js";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "gateway-instagram", version: "0.1.0", level: config.LOG_LEVEL });
useBufferTextEncoding();

if (!config.DATABASE_URL) {
  log.fatal({}, "DATABASE_URL is required");
  process.exit(78);
}
// The gateway's tables live beside the delivery service's; only its own (ig_*) are used here.
const db = createDatabase({
  url: config.DATABASE_URL,
  poolSize: config.DATABASE_POOL_SIZE,
  applicationName: "gateway-instagram",
  onPoolError: (err) => log.warn({ err }, "idle database connection failed"),
}) as unknown as Kysely<IgDatabase>;
const applied = await migrateGateway(db);
if (applied.length > 0) log.info({ applied }, "migrations applied");

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
const app = buildApp({ config, db, link, log, https: tls.https });
await app.listen({ host: config.HTTP_HOST, port: config.HTTP_PORT });

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  await app.close();
  await link.close();
  await db.destroy();
  log.info({}, "stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
