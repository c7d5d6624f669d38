import { loadOrExit } from "@switchboard/config";
import { createDeliveryLink } from "@switchboard/delivery-link";
import { createLogger } from "@switchboard/logger";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { createGatewayDatabase, migrateGatewayDatabase } from "./storage/database.js";
import { VERSION } from "./version.js";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "gateway-messenger", version: VERSION, level: config.LOG_LEVEL });

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
const link = createDeliveryLink({
  target: config.DELIVERY_TARGET,
  appToken: config.DELIVERY_APP_TOKEN,
  streams: config.DELIVERY_STREAMS,
  log: log.child({ component: "delivery-link" }),
});
const app = await buildApp({ config, db, link, log });
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
