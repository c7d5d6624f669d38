// Fault 2: SIGKILL the Redis both delivery instances use (fan-out wake-ups, rate limits) mid-load,
// then start it again on the same port.
import { cloneTemplateDatabase } from "@switchboard/testkit";
import { describe, onTestFinished, test } from "vitest";
import {
  loadOptions,
  runWithFault,
  SCALE,
  sleep,
  splitDriver,
  startDelivery,
  startPrivateRedis,
  verdict,
} from "./harness.js";

describe("fault: restart Redis", () => {
  test("delivery continues after Redis is killed and restarted; nothing acknowledged is lost or duplicated", async () => {
    const db = await cloneTemplateDatabase();
    onTestFinished(() => db.drop());
    const redis = await startPrivateRedis();
    const a = await startDelivery("faults-redis-a", db.url, redis.url);
    const b = await startDelivery("faults-redis-b", db.url, redis.url);
    const report = await runWithFault(
      loadOptions(a.target, "restart-redis"),
      (o, l) => splitDriver(a.target, b.target, o, l),
      async () => {
        await sleep(SCALE.durationSeconds * 300);
        await redis.kill();
        await sleep(2_000);
        await redis.start();
      },
    );
    verdict("restart-redis", report);
  });
});
