// An in-process delivery service for the integration tests (cloned database, prefixed Redis).
import { buildApp } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createRedisFanout } from "@switchboard/fanout";
import { createDatabase } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import pino from "pino";
import { onTestFinished } from "vitest";

/** The app tokens the instance accepts, one per app. */
export const TOKENS = {
  whatsapp: "wa-token-0123456789abcdef",
  messenger: "ms-token-0123456789abcdef",
  instagram: "ig-token-0123456789abcdef",
};
/** The tests' logger: silent unless TEST_LOG_LEVEL is set. */
export const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

/**
 * Starts an in-process delivery service on a database cloned from the template and a Redis key
 * prefix of its own, on 127.0.0.1 port 0; resolves to its `host:port`. Everything is closed (and
 * the clone dropped) when the test ends.
 */
export async function startDelivery(instanceId: string): Promise<string> {
  const clone = await cloneTemplateDatabase();
  const db = createDatabase({ url: clone.url, poolSize: 10 });
  const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: redisTestPrefix() });
  const app = buildApp({
    config: testDeliveryConfig(TOKENS, { INSTANCE_ID: instanceId }),
    db,
    fanout,
    log,
    collectDefaultMetrics: false,
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  onTestFinished(async () => {
    await app.close(1000);
    await fanout.close();
    await db.destroy();
    await clone.drop();
  });
  return `127.0.0.1:${port}`;
}
