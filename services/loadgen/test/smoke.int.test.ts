// Smoke test: a short run against an in-process delivery instance (cloned database, prefixed
// Redis), asserting correctness only — no timing.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, onTestFinished, test } from "vitest";
import { cpuMicrosPerSend, DEFAULTS, runLoadTest, summarize, type LoadgenOptions } from "../src/index.js";
import { log, startDelivery, TOKENS } from "./delivery-instance.js";

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "loadgen-smoke-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function options(target: string, outDir: string, over: Partial<LoadgenOptions>): LoadgenOptions {
  return {
    target,
    appTokens: TOKENS,
    devices: 20,
    devicesPerAccount: 1,
    mix: [
      { app: "whatsapp", weight: 40 },
      { app: "messenger", weight: 30 },
      { app: "instagram", weight: 30 },
    ],
    groups: 1,
    groupSize: 5,
    groupShare: 0.2,
    sizeBytes: 128,
    ratePerSecond: 40,
    closedLoop: false,
    until: "delivered",
    inflight: DEFAULTS.openLoopInflight,
    durationSeconds: 2,
    warmupSeconds: 1,
    mode: "delivery-stream",
    payload: "random",
    signalPoolSize: 4,
    streams: 2,
    gateways: {},
    window: 100,
    messengerSends: "socket",
    serverReceipts: true,
    whatsappConnections: 0,
    whatsappChat: "h2",
    outDir,
    name: "smoke",
    watch: [],
    populationFile: undefined,
    registerConcurrency: 8,
    drainQuietSeconds: 5,
    drainTimeoutSeconds: 20,
    sendTimeoutSeconds: 15,
    seed: 42,
    intervalMs: 500,
    ...over,
  };
}

describe("runLoadTest", () => {
  test("delivers every message of a short open-loop run once and in order, and writes the report", async () => {
    const target = await startDelivery("loadgen-smoke");
    const out = await tempDir();
    const lines: string[] = [];
    const { report, files } = await runLoadTest(options(target, out, {}), {
      log,
      progress: (l) => lines.push(l),
    });
    const v = report.verification;
    expect(v.sends.issued).toBeGreaterThan(0);
    expect(report.traffic.totals.groupSends).toBeGreaterThan(0);
    expect(v.sends.confirmed).toBe(v.sends.issued);
    expect(v.delivered).toBe(v.expectedDeliveries);
    expect({ lost: v.lost, duplicates: v.duplicates, reordered: v.reordered }).toEqual({
      lost: 0,
      duplicates: 0,
      reordered: 0,
    });
    expect(report.errors.byReason).toEqual([]);
    expect(report.passed).toBe(true);
    expect(report.setup.accountsPerApp).toEqual({ whatsapp: 8, messenger: 6, instagram: 6 });
    // Every acknowledged one-to-one message gets its sender a server delivery receipt.
    expect(report.traffic.totals.receipts).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes("delivered"))).toBe(true);

    const json = JSON.parse(await readFile(files!.json, "utf8")) as typeof report;
    expect(json.verification.passed).toBe(true);
    expect(json.machine.loopback.roundTrips).toBeGreaterThan(0);
    expect(json.machine.loopback.wallMicros).toBeGreaterThan(0);
    expect(JSON.stringify(json)).not.toContain(TOKENS.whatsapp);
    const html = await readFile(files!.html, "utf8");
    expect(html).toContain("<svg");
    expect(html).toContain("PASSED");
    expect(html).toContain("loopback round trip");
    // Each watched process's CPU per send (here the load generator alone), in all three forms.
    const [self] = json.processes;
    expect(self?.name).toBe("loadgen");
    // (The report divides the unrounded mean CPU; the JSON's mean is rounded to 0.1 %.)
    const expected = cpuMicrosPerSend(self?.cpuPercent.mean ?? 0, json.traffic.sendsPerSecond) ?? 0;
    expect(self?.cpuMicrosPerSend).toBeGreaterThan(0);
    expect(Math.abs((self?.cpuMicrosPerSend ?? 0) - expected)).toBeLessThanOrEqual(expected * 0.05 + 1);
    expect(summarize(report)).toContain(`(${self?.cpuMicrosPerSend} µs per send)`);
    expect(html).toContain("CPU µs per send");
  });

  test("reuses a saved population in a later run", async () => {
    const target = await startDelivery("loadgen-smoke");
    const out = await tempDir();
    const populationFile = join(out, "population.json");
    const first = await runLoadTest(
      options(target, join(out, "1"), { populationFile, durationSeconds: 1, warmupSeconds: 0 }),
      { log, progress: () => {} },
    );
    expect(first.report.setup.reusedPopulation).toBe(false);
    const second = await runLoadTest(
      options(target, join(out, "2"), { populationFile, durationSeconds: 1, warmupSeconds: 0, seed: 43 }),
      { log, progress: () => {} },
    );
    expect(second.report.setup.reusedPopulation).toBe(true);
    for (const { report } of [first, second]) {
      expect(report.verification.sends.issued).toBeGreaterThan(0);
      expect(report.passed).toBe(true);
    }
  });

  test("verifies unary sends of libsignal ciphertext to multi-device accounts, without server receipts", async () => {
    const target = await startDelivery("loadgen-smoke");
    const out = await tempDir();
    const { report } = await runLoadTest(
      options(target, out, {
        serverReceipts: false,
        mode: "delivery-unary",
        payload: "signal",
        devices: 12,
        devicesPerAccount: 2,
        groupSize: 3,
        sizeBytes: 200,
        durationSeconds: 1.5,
        warmupSeconds: 0.5,
      }),
      { log, progress: () => {} },
    );
    const v = report.verification;
    expect(report.setup.signal?.sessions).toBeGreaterThan(0);
    expect(v.sends.confirmed).toBe(v.sends.issued);
    expect(v.sends.issued).toBeGreaterThan(0);
    expect({ lost: v.lost, duplicates: v.duplicates, reordered: v.reordered }).toEqual({
      lost: 0,
      duplicates: 0,
      reordered: 0,
    });
    expect(report.errors.total).toBe(0);
    expect(report.passed).toBe(true);
    // Sent with no_delivery_receipt: acknowledging them queued nothing for the senders.
    expect(report.traffic.totals.receipts).toBe(0);
    expect(v.unwantedReceipts).toBe(0);
    expect(summarize(report)).toContain("no server receipts");
  });
});
