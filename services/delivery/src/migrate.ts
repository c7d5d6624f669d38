// `pnpm --filter @switchboard/delivery migrate`: applies pending migrations to DATABASE_URL and
// exits. Compose runs it once before the delivery replicas start.
import { databaseEnv, loadOrExit, logEnv, parseEnv } from "@switchboard/config";
import { createLogger } from "@switchboard/logger";
import { migrateUrl } from "@switchboard/storage";

const config = loadOrExit(() => parseEnv({ ...databaseEnv, ...logEnv }));
const log = createLogger({ service: "migrate", version: "0.1.0", level: config.LOG_LEVEL });
if (!config.DATABASE_URL) {
  log.fatal({}, "DATABASE_URL is required");
  process.exit(78);
}
const applied = await migrateUrl(config.DATABASE_URL);
log.info({ applied }, applied.length > 0 ? "migrations applied" : "schema up to date");
