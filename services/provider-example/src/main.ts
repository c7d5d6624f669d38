import { loadOrExit } from "@switchboard/config";
import { createLogger } from "@switchboard/logger";
import { buildAcmeApp } from "./app.js";
import { loadConfig } from "./config.js";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "provider-example", version: "0.1.0", level: config.LOG_LEVEL });
const app = buildAcmeApp({
  deliveryTarget: config.DELIVERY_TARGET,
  providerId: config.PROVIDER_ID,
  providerToken: config.PROVIDER_TOKEN,
  log,
});
const port = await app.listen(config.HTTP_HOST, config.HTTP_PORT);
log.info({ port, provider: config.PROVIDER_ID, delivery: config.DELIVERY_TARGET }, "acme chat listening");

async function shutdown(signal: string) {
  log.info({ signal }, "shutting down");
  await app.close();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
