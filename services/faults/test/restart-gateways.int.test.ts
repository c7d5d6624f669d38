// Fault 4: kill -9 the Messenger-style (WebSocket) and WhatsApp-style (gRPC Chat stream) gateways
// mid-load and start them again: every connected device reconnects at once (a reconnect storm),
// with the SDK's jittered exponential back-off, and resumes from what it acknowledged.
import { performance } from "node:perf_hooks";
import { cloneTemplateDatabase } from "@switchboard/testkit";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  describeReceivers,
  expectClean,
  introduce,
  payloadOf,
  Receiver,
  registerDevices,
  RetrySlots,
  runTagOf,
  samplePostgres,
  sendWithRetry,
  startGateway,
  tally,
  waitFor,
  type FaultDevice,
  type SendLedger,
} from "./gateways.js";
import { sleep, startDelivery, startPrivateRedis } from "./harness.js";

function envNumber(name: string, fallback: number): number {
  const n = Number(process.env[name] ?? "");
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** CI form: 300 receiving devices (150 per gateway); FAULT_STORM_DEVICES scales it. */
const STORM = {
  devices: Math.max(4, Math.round(envNumber("FAULT_STORM_DEVICES", 300))),
  sendersPerApp: 3,
  rate: envNumber("FAULT_STORM_RATE", 100),
  durationSeconds: envNumber("FAULT_STORM_DURATION", 8),
};
/** The SDK client's back-off shape, scaled down so a CI run settles within seconds. */
const BACKOFF = { initial: 250, max: 5_000 };

const progress = (line: string) => {
  if (process.env.FAULT_PROGRESS === "1") console.error(`[restart-gateways] ${line}`);
};

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

describe("fault: restart the gateways (reconnect storm)", () => {
  test("every device reconnects with jittered back-off; nothing acknowledged is lost or duplicated", async () => {
    const db = await cloneTemplateDatabase();
    onTestFinished(() => db.drop());
    const redis = await startPrivateRedis();
    const delivery = await startDelivery("faults-delivery-storm", db.url, redis.url);
    const [ms, wa] = await Promise.all([
      startGateway("messenger", db.url, delivery.target),
      startGateway("whatsapp", db.url, delivery.target),
    ]);
    const perApp = Math.round(STORM.devices / 2);
    const tSetup = performance.now();
    const [msReceivers, waReceivers, msSenders, waSenders] = await Promise.all([
      registerDevices(ms, "m", perApp, 4),
      registerDevices(wa, "w", perApp, 4),
      registerDevices(ms, "ms", STORM.sendersPerApp, 1),
      registerDevices(wa, "ws", STORM.sendersPerApp, 1),
    ]);
    const runTag = runTagOf();
    const devices = [...msReceivers, ...waReceivers];
    const receivers = devices.map((d) => new Receiver(d, runTag, BACKOFF));
    onTestFinished(async () => {
      await Promise.all(receivers.map((r) => r.stop()));
    });
    for (const r of receivers) r.start();
    progress(`registered ${devices.length + 2 * STORM.sendersPerApp} devices`);
    const connected = await waitFor(() => receivers.every((r) => r.stats.drained >= 1), 120_000);
    progress(describeReceivers(receivers, 1));
    expect(connected).toBe(true);
    const setupMs = performance.now() - tSetup;
    progress(`all connected; setup ${Math.round(setupMs)} ms`);

    // Sender s (messenger 0..k-1, whatsapp k..2k-1) writes to the receivers of its own app.
    const senders: FaultDevice[] = [...msSenders, ...waSenders];
    const targetsOf = (s: number) => {
      const offset = s < STORM.sendersPerApp ? 0 : perApp;
      return { offset, pool: s < STORM.sendersPerApp ? msReceivers : waReceivers };
    };
    for (let s = 0; s < senders.length; s++) await introduce(senders[s]!, targetsOf(s).pool);

    const ledger: SendLedger = {
      issued: new Map(),
      acked: new Set(),
      failed: new Map(),
      retries: 0,
      serverDeduplicated: 0,
      maxSendMs: 0,
      retrySlots: new RetrySlots(32),
    };
    const pgSampler = samplePostgres(db.url, db.name);
    onTestFinished(() => pgSampler.stop());
    const seqs = senders.map(() => 0);
    const sends: Promise<void>[] = [];
    const total = Math.round(STORM.rate * STORM.durationSeconds);
    const t0 = performance.now();
    const traffic = (async () => {
      for (let k = 0; k < total; k++) {
        const due = t0 + (k * 1000) / STORM.rate;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const s = k % senders.length;
        const { offset, pool } = targetsOf(s);
        const idx = Math.floor(k / senders.length) % pool.length;
        const seq = ++seqs[s]!;
        const key = `${s}.${seq}`;
        ledger.issued.set(key, offset + idx);
        sends.push(
          sendWithRetry(senders[s]!, pool[idx]!, payloadOf(runTag, s, seq), `${runTag}.${key}`, ledger, key),
        );
      }
    })();

    // The fault: both gateways die at 30 % of the traffic and come back on the same ports.
    await sleep(STORM.durationSeconds * 300);
    const drainedBefore = receivers.map((r) => r.stats.drained);
    const failuresBefore = receivers.map((r) => r.stats.failures);
    pgSampler.reset();
    const tKill = performance.now();
    await Promise.all([ms.process.stop("SIGKILL"), wa.process.stop("SIGKILL")]);
    await Promise.all([ms.process.restart(), wa.process.restart()]);
    const tReady = performance.now();
    progress(`gateways back after ${Math.round(tReady - tKill)} ms`);
    const allBack = await waitFor(
      () => receivers.every((r, i) => r.stats.drained > (drainedBefore[i] as number)),
      60_000,
    );
    const tResynced = Math.max(...receivers.map((r) => r.stats.drainedAt));
    const storm = {
      maxConnections: pgSampler.maxConnections,
      maxActive: pgSampler.maxActive,
      maxProbeMs: pgSampler.maxProbeMs,
    };

    progress(`resubscribed: ${allBack}; ${describeReceivers(receivers, 2)}`);
    await traffic;
    await Promise.all(sends);
    await waitFor(() => tally(ledger, receivers).lost === 0, 30_000);
    await sleep(500); // late duplicates, if any, would arrive now
    await pgSampler.stop();
    const t = tally(ledger, receivers);
    const reconnectFailures = receivers.reduce(
      (n, r, i) => n + r.stats.failures - (failuresBefore[i] as number),
      0,
    );
    const firstBackoffs = receivers.map((r, i) => r.stats.backoffMs[failuresBefore[i] as number] ?? NaN);
    const backoffs = receivers.flatMap((r) => r.stats.backoffMs);
    console.log(
      `fault=restart-gateways devices=${receivers.length} setupMs=${Math.round(setupMs)} sent=${t.sent} acked=${t.acked} ` +
        `delivered=${t.delivered} lost=${t.lost} duplicated=${t.duplicated}` +
        ` (failed=${t.failed} retries=${ledger.retries} serverDeduplicated=${ledger.serverDeduplicated}` +
        ` redeliveries=${t.redeliveries} maxSendMs=${Math.round(ledger.maxSendMs)})` +
        ` storm: gatewaysDownMs=${Math.round(tReady - tKill)}` +
        ` allResubscribedAfterReadyMs=${Math.round(tResynced - tReady)}` +
        ` receiveFailures=${reconnectFailures} backoffMs p50=${percentile(backoffs, 50)}` +
        ` max=${Math.max(0, ...backoffs)} distinctFirst=${new Set(firstBackoffs).size}` +
        ` pgMaxConnections=${storm.maxConnections} pgMaxActive=${storm.maxActive}` +
        ` pgMaxProbeMs=${storm.maxProbeMs.toFixed(1)} probes=${pgSampler.probes}`,
    );

    expect(allBack).toBe(true);
    expectClean(t);
    // Senders retried through the outage with the same client_message_id: none gave up.
    expect(t.failed).toBe(0);
    expect(t.acked).toBe(t.sent);
    // The storm reconnected with jitter: first retry delays are spread, not one value.
    expect(new Set(firstBackoffs).size).toBeGreaterThan(receivers.length / 4);
    // Three processes with pools of 10 each: the storm cannot open more sessions than that.
    expect(storm.maxConnections).toBeLessThanOrEqual(3 * 10 + 2);
  }, 600_000);
});
