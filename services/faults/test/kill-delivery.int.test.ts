// Fault 1: kill -9 one of two delivery instances mid-load, then start it again.
import { cloneTemplateDatabase } from "@switchboard/testkit";
import { describe, expect, onTestFinished, test } from "vitest";
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

describe("fault: kill -9 a delivery instance", () => {
  test("receivers on the killed instance get every acknowledged message once after it restarts", async () => {
    const db = await cloneTemplateDatabase();
    onTestFinished(() => db.drop());
    const redis = await startPrivateRedis();
    const a = await startDelivery("faults-delivery-a", db.url, redis.url);
    const b = await startDelivery("faults-delivery-b", db.url, redis.url);
    const options = loadOptions(a.target, "kill-delivery");
    let killedPid: number | undefined;
    const report = await runWithFault(
      options,
      (o, l) => splitDriver(a.target, b.target, o, l),
      async () => {
        await sleep(SCALE.durationSeconds * 300);
        killedPid = b.process.pid;
        await b.process.stop("SIGKILL");
        await sleep(2_000);
        await b.process.restart();
      },
    );
    expect(killedPid).toBeDefined();
    expect(b.process.pid).not.toBe(killedPid);
    verdict("kill-9-delivery", report);
  });
});
