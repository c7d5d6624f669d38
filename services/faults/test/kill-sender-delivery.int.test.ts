// Fault 5: kill -9 the delivery instance the SENDERS are connected to (two instances), then start
// it again. Senders retry failed sends with the same client_message_id, through the other
// instance first: every send ends acknowledged, and none is delivered twice.
import { cloneTemplateDatabase } from "@switchboard/testkit";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  loadOptions,
  retryingDriver,
  runWithFault,
  SCALE,
  sleep,
  startDelivery,
  startPrivateRedis,
  verdict,
  type RetryStats,
} from "./harness.js";

describe("fault: kill -9 the senders' delivery instance", () => {
  test("senders retry with the same client_message_id; every send is acknowledged exactly once", async () => {
    const db = await cloneTemplateDatabase();
    onTestFinished(() => db.drop());
    const redis = await startPrivateRedis();
    const a = await startDelivery("faults-delivery-a", db.url, redis.url);
    const b = await startDelivery("faults-delivery-b", db.url, redis.url);
    // Sends issued while A is down are still being retried after the traffic stops: give the
    // drain room for them (it ends as soon as everything owed has arrived).
    const options = {
      ...loadOptions(a.target, "kill-sender-delivery"),
      drainTimeoutSeconds: 180,
    };
    const stats: RetryStats = { retries: 0, attemptsByTarget: [], recovered: 0, failures: new Map() };
    let killedPid: number | undefined;
    const report = await runWithFault(
      options,
      (o, l) => retryingDriver([a.target, b.target], b.target, o, l, stats),
      async () => {
        await sleep(SCALE.durationSeconds * 300);
        killedPid = a.process.pid;
        await a.process.stop("SIGKILL");
        await sleep(2_000);
        await a.process.restart();
      },
    );
    console.log(
      `fault=kill-9-sender-delivery retries=${stats.retries} recovered=${stats.recovered}` +
        ` attemptsByInstance=A:${stats.attemptsByTarget[0]},B:${stats.attemptsByTarget[1]}` +
        ` failedAttempts: ${[...stats.failures].map(([k, v]) => `${k.replace(/^0:/, "A:").replace(/^1:/, "B:")}=${v}`).join(" ")}`,
    );
    expect(killedPid).toBeDefined();
    expect(a.process.pid).not.toBe(killedPid);
    verdict("kill-9-sender-delivery", report);
    // Retries, not luck: sends did fail while A was down, and every one of them got through.
    expect(stats.recovered).toBeGreaterThan(0);
    expect(report.verification.sends.failed).toBe(0);
    expect(report.verification.sends.confirmed).toBe(report.verification.sends.issued);
  }, 400_000);
});
