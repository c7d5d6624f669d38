import { loadOrExit } from "@switchboard/config";
import { createDeliveryLink } from "@switchboard/delivery-link";
import { createLogger } from "@switchboard/logger";
import { createDatabase } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { migrateGateway } from "./storage/migrate.js";
import type { IgDatabase } from "./storage/schema.js";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "gateway-instagram", version: "0.1.0", level: config.LOG_LEVEL });

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

const link = createDeliveryLink({
  target: config.DELIVERY_TARGET,
  appToken: config.DELIVERY_APP_TOKEN,
  streams: config.DELIVERY_STREAMS,
  log: log.child({ component: "delivery-link" }),
});
const app = buildApp({ config, db, link, log });
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
