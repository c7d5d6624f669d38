// Smoke test of the full path (`--via gateways`): the delivery service and the three gateways as
// separate processes (as services/e2e starts them), and short load-generator runs through the
// gateways' native APIs — WhatsApp-style gRPC Chat streams, Messenger-style REST + WebSocket,
// Instagram-style REST + SSE — asserting correctness only (no timing).
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cloneTemplateDatabase, redisUrl, type DatabaseClone } from "@switchboard/testkit";
import type { ServiceProcess } from "@switchboard/testkit/service-process";
import { startSystem as startProcesses } from "@switchboard/testkit/system";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { DEFAULTS, runLoadTest, type LoadgenOptions, type LoadReport } from "../src/index.js";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const token = (app: string) => `lg-${app}-${randomBytes(12).toString("hex")}`;

interface System {
  gateways: LoadgenOptions["gateways"];
  whatsapp: ServiceProcess;
}

/** Delivery, then the three gateways; everything started is pushed to `owned` (stopped in afterAll). */
async function startSystem(owned: { processes: ServiceProcess[]; clones: DatabaseClone[] }): Promise<System> {
  const clone = await cloneTemplateDatabase();
  owned.clones.push(clone);
  const system = await startProcesses({
    databaseUrl: clone.url,
    redisUrl: redisUrl(),
    tokens: { whatsapp: token("whatsapp"), messenger: token("messenger"), instagram: token("instagram") },
    env: { LOG_LEVEL: "warn", SHUTDOWN_GRACE_MS: "3000" },
    deliveryEnv: { INSTANCE_ID: "loadgen-gateways" },
    started: (p) => owned.processes.push(p),
  });
  const gw = system.gateways;
  if (!gw) throw new Error("the gateways were not started");
  return {
    gateways: {
      whatsapp: gw.whatsappTarget,
      whatsappAdmin: gw.whatsappAdmin,
      messenger: gw.messengerUrl,
      instagram: gw.instagramUrl,
    },
    whatsapp: gw.whatsapp,
  };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "loadgen-gateways-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function options(
  gateways: LoadgenOptions["gateways"],
  outDir: string,
  over: Partial<LoadgenOptions>,
): LoadgenOptions {
  return {
    target: "127.0.0.1:1",
    appTokens: {},
    devices: 18,
    devicesPerAccount: 1,
    mix: [
      { app: "whatsapp", weight: 40 },
      { app: "messenger", weight: 30 },
      { app: "instagram", weight: 30 },
    ],
    groups: 2,
    groupSize: 5,
    groupShare: 0.25,
    sizeBytes: 128,
    ratePerSecond: 30,
    closedLoop: false,
    until: "delivered",
    inflight: DEFAULTS.openLoopInflight,
    durationSeconds: 2,
    warmupSeconds: 0.5,
    mode: "gateways",
    payload: "random",
    signalPoolSize: 4,
    streams: 2,
    gateways,
    window: 100,
    messengerSends: "socket",
    serverReceipts: true,
    whatsappConnections: 0,
    whatsappChat: "h2",
    outDir,
    name: "gateways-smoke",
    watch: [],
    populationFile: undefined,
    registerConcurrency: 6,
    drainQuietSeconds: 10,
    drainTimeoutSeconds: 40,
    sendTimeoutSeconds: 20,
    seed: 7,
    intervalMs: 500,
    ...over,
  };
}

function expectClean(report: LoadReport): void {
  const v = report.verification;
  expect(v.sends.issued).toBeGreaterThan(0);
  expect(v.sends.confirmed).toBe(v.sends.issued);
  expect(v.delivered).toBe(v.expectedDeliveries);
  expect({
    lost: v.lost,
    duplicates: v.duplicates,
    reordered: v.reordered,
    misrouted: v.misrouted,
    unrecognized: v.unrecognized,
  }).toEqual({ lost: 0, duplicates: 0, reordered: 0, misrouted: 0, unrecognized: 0 });
  expect(report.errors.byReason).toEqual([]);
  expect(report.passed).toBe(true);
}

describe("runLoadTest through the gateways", () => {
  const owned = { processes: [] as ServiceProcess[], clones: [] as DatabaseClone[] };
  let sys: System;

  beforeAll(async () => {
    sys = await startSystem(owned);
  }, 240_000);

  afterAll(async () => {
    await Promise.allSettled(owned.processes.map((p) => p.stop("SIGTERM", 5_000)));
    await Promise.allSettled(owned.clones.map((c) => c.drop()));
  });

  test("delivers one-to-one and group traffic of all three apps once and in order", async () => {
    const out = await tempDir();
    const lines: string[] = [];
    const { report, files } = await runLoadTest(options(sys.gateways, out, {}), {
      log,
      progress: (l) => lines.push(l),
    });
    expectClean(report);
    expect(report.options.mode).toBe("gateways");
    expect(report.setup.accountsPerApp).toEqual({ whatsapp: 7, messenger: 6, instagram: 5 });
    expect(report.traffic.totals.groupSends).toBeGreaterThan(0);
    expect(report.traffic.totals.groupSends).toBeLessThan(report.traffic.totals.issued);
    // Every one-to-one delivery is acknowledged, so its sender gets a server delivery receipt.
    expect(report.traffic.totals.receipts).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes("introduced"))).toBe(true);
    const json = JSON.parse(await readFile(files!.json, "utf8")) as LoadReport;
    expect(json.passed).toBe(true);
  });

  test("carries libsignal ciphertext to multi-device accounts and reuses the population", async () => {
    const out = await tempDir();
    const populationFile = join(out, "population.json");
    const over: Partial<LoadgenOptions> = {
      payload: "signal",
      devices: 12,
      devicesPerAccount: 2,
      groups: 1,
      groupSize: 3,
      sizeBytes: 200,
      closedLoop: true,
      inflight: 8,
      durationSeconds: 1.5,
      populationFile,
    };
    const first = await runLoadTest(options(sys.gateways, join(out, "1"), over), { log, progress: () => {} });
    expectClean(first.report);
    expect(first.report.setup.signal?.sessions).toBeGreaterThan(0);
    expect(first.report.setup.reusedPopulation).toBe(false);
    // The second run also asks for no server receipts, through each app's native field, and
    // carries the WhatsApp-style Chat streams over the SDK's grpc-js channel instead of h2-bidi.ts.
    const second = await runLoadTest(
      options(sys.gateways, join(out, "2"), {
        ...over,
        seed: 8,
        messengerSends: "http",
        serverReceipts: false,
        whatsappChat: "grpc-js",
      }),
      {
        log,
        progress: () => {},
      },
    );
    expect(second.report.setup.reusedPopulation).toBe(true);
    expectClean(second.report);
    expect(first.report.traffic.totals.receipts).toBeGreaterThan(0);
    expect(second.report.traffic.totals.receipts).toBe(0);
    expect(second.report.verification.unwantedReceipts).toBe(0);
  });

  test("retries sends with the same client id across a gateway restart, losing and duplicating nothing", async () => {
    const out = await tempDir();
    let traffic!: () => void;
    const trafficStarted = new Promise<void>((resolve) => (traffic = resolve));
    const run = runLoadTest(
      options(sys.gateways, out, {
        mix: [{ app: "whatsapp", weight: 1 }],
        devices: 8,
        groups: 0,
        groupShare: 0,
        ratePerSecond: 20,
        durationSeconds: 4,
        warmupSeconds: 0,
        sendTimeoutSeconds: 120,
        drainQuietSeconds: 90,
        drainTimeoutSeconds: 150,
      }),
      {
        log,
        progress: (l) => {
          if (l.startsWith("traffic:")) traffic();
        },
      },
    );
    await trafficStarted;
    // Kill -9: sends and subscriptions in flight fail and are retried against the new process.
    await sys.whatsapp.stop("SIGKILL");
    await sys.whatsapp.restart();
    const { report } = await run;
    expectClean(report);
    expect(report.traffic.retries + report.traffic.reconnects).toBeGreaterThan(0);
  }, 300_000);
});
