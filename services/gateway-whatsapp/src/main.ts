import { loadOrExit } from "@switchboard/config";
import { createDeliveryLink } from "@switchboard/delivery-link";
import { createLogger } from "@switchboard/logger";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { createWaDatabase, migrateWaDatabase } from "./storage/database.js";

const VERSION = "0.1.0";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "gateway-whatsapp", version: VERSION, level: config.LOG_LEVEL });

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

const link = createDeliveryLink({
  target: config.DELIVERY_TARGET,
  appToken: config.DELIVERY_APP_TOKEN,
  streams: config.DELIVERY_STREAMS,
  log: log.child({ component: "delivery-link" }),
});

const app = buildApp({ db, link, log });
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
