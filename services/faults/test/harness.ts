// Shared pieces of the fault scripts: delivery service processes, a bounded load run whose
// traffic phase a fault can hook into, a driver that sends through one instance and receives
// through another, and the one-line figure each fault prints.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createDeliveryDriver,
  DEFAULTS,
  runLoadTest,
  type Driver,
  type LoadgenOptions,
  type LoadReport,
} from "@switchboard/loadgen";
import { startRedisServer, type RedisServer } from "@switchboard/testkit/redis-servers";
import {
  freePort,
  httpReady,
  startServiceProcess,
  type ServiceProcess,
} from "@switchboard/testkit/service-process";
import pino, { type Logger } from "pino";
import { expect, onTestFinished } from "vitest";

export const TOKENS = {
  whatsapp: "fault-wa-token-0123456789",
  messenger: "fault-ms-token-0123456789",
  instagram: "fault-ig-token-0123456789",
};
const DELIVERY_DIR = join(dirname(fileURLToPath(import.meta.url)), "../../delivery");

export const log: Logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? NaN : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** The short CI form by default; FAULT_DEVICES, FAULT_RATE, FAULT_DURATION scale it up. */
export const SCALE = {
  devices: Math.round(envNumber("FAULT_DEVICES", 30)),
  rate: envNumber("FAULT_RATE", 150),
  durationSeconds: envNumber("FAULT_DURATION", 10),
};

/** A delivery service process (`src/main.ts` of services/delivery) on free loopback ports. */
export interface DeliveryInstance {
  readonly target: string;
  readonly process: ServiceProcess;
  /** Prometheus `/metrics` (process memory among them). */
  readonly metricsUrl: string;
}

/** Starts a delivery process on `databaseUrl` and `redisUrl`; stopped when the test finishes. */
export async function startDelivery(
  name: string,
  databaseUrl: string,
  redisUrl: string,
): Promise<DeliveryInstance> {
  const grpcPort = await freePort();
  const metricsPort = await freePort();
  const proc = await startServiceProcess({
    name,
    cwd: DELIVERY_DIR,
    env: {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      APP_TOKENS: Object.entries(TOKENS)
        .map(([app, token]) => `${app}=${token}`)
        .join(","),
      GRPC_HOST: "127.0.0.1",
      GRPC_PORT: String(grpcPort),
      METRICS_PORT: String(metricsPort),
      STREAM_POLL_MS: "1000",
      MIGRATE_ON_START: "false",
      INSTANCE_ID: name,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
      SHUTDOWN_GRACE_MS: "1000",
    },
    ready: httpReady(`http://127.0.0.1:${metricsPort}/healthz`),
    readyTimeoutMs: 60_000,
  });
  onTestFinished(() => proc.stop("SIGKILL"));
  return {
    target: `127.0.0.1:${grpcPort}`,
    process: proc,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
  };
}

/** A private redis-server on a free loopback port (so it may be killed); removed after the test. */
export async function startPrivateRedis(): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), "faults-redis-"));
  const redis = await startRedisServer({ dir });
  onTestFinished(async () => {
    await redis.kill();
    await rm(dir, { recursive: true, force: true });
  });
  return redis;
}

/**
 * A driver that registers and sends through `sendTarget` and subscribes and acks through
 * `receiveTarget`: with two instances, every message crosses from one to the other (the
 * wake-up goes through Redis), and a fault on one instance hits only one side.
 */
export function splitDriver(sendTarget: string, receiveTarget: string, o: LoadgenOptions, l: Logger): Driver {
  const common = {
    mode: "delivery-stream" as const,
    appTokens: o.appTokens,
    streams: o.streams,
    window: o.window,
    sendTimeoutMs: o.sendTimeoutSeconds * 1000,
  };
  const send = createDeliveryDriver({ ...common, target: sendTarget, log: l.child({ side: "send" }) });
  const receive = createDeliveryDriver({
    ...common,
    target: receiveTarget,
    log: l.child({ side: "receive" }),
  });
  return {
    mode: "delivery-stream",
    registerAccount: (req) => send.registerAccount(req),
    registerDevice: (req) => send.registerDevice(req),
    createGroup: (requester, members) => send.createGroup(requester, members),
    subscribe: (device, listener) => receive.subscribe(device, listener),
    sendDirect: (m) => send.sendDirect(m),
    sendGroup: (m) => send.sendGroup(m),
    flushAcks: () => receive.flushAcks(),
    async close() {
      await Promise.all([send.close(), receive.close()]);
    },
  };
}

type SendResult = Awaited<ReturnType<Driver["sendDirect"]>>;

/** Send failures a sender retries (with the same client_message_id): the service may not have seen it. */
const RETRYABLE_CODES = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"]);

/** What the retrying senders did. */
export interface RetryStats {
  /** Attempts beyond the first. */
  retries: number;
  /** Attempts made through each send target, by index. */
  readonly attemptsByTarget: number[];
  /** Sends that succeeded only after a retry. */
  recovered: number;
  /** Failed attempts by `target index:CODE/REASON`. */
  readonly failures: Map<string, number>;
}

/**
 * A driver whose senders retry: registers and sends through `sendTargets[0]`; a send failing
 * with a retryable code (the instance died: LINK_RECONNECTING, SEND_TIMEOUT...) is sent again
 * with the SAME client_message_id through the next target in turn, after a jittered pause,
 * until it succeeds or `budgetMs` passed; at most `maxConcurrentRetries` retries are in flight. The delivery service's idempotency (send log keyed by
 * sender device and client_message_id) makes a retry of a send that did commit return the
 * original message id, so no retry can deliver a message twice. Subscribes and acks through
 * `receiveTarget`.
 */
export function retryingDriver(
  sendTargets: string[],
  receiveTarget: string,
  o: LoadgenOptions,
  l: Logger,
  stats: RetryStats,
  budgetMs = 120_000,
  maxConcurrentRetries = 64,
): Driver {
  const base = splitDriver(sendTargets[0] as string, receiveTarget, o, l);
  const others = sendTargets.slice(1).map((t, i) =>
    createDeliveryDriver({
      mode: "delivery-stream",
      appTokens: o.appTokens,
      streams: o.streams,
      window: o.window,
      sendTimeoutMs: o.sendTimeoutSeconds * 1000,
      target: t,
      log: l.child({ side: `send-${i + 1}` }),
    }),
  );
  const senders = [base, ...others];
  while (stats.attemptsByTarget.length < senders.length) stats.attemptsByTarget.push(0);
  // Retries share a few slots: without them, every send issued while an instance is down is
  // retried at once on the surviving one, times out behind the others and is retried again (a
  // retry storm that keeps the survivor saturated with work nobody waits for any more).
  let active = 0;
  const slots: Array<() => void> = [];
  const acquire = async () => {
    while (active >= maxConcurrentRetries) await new Promise<void>((resolve) => slots.push(resolve));
    active++;
  };
  const release = () => {
    active--;
    slots.shift()?.();
  };
  const retrying = async (op: (d: Driver) => Promise<SendResult>): Promise<SendResult> => {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const i = attempt % senders.length;
      stats.attemptsByTarget[i] = (stats.attemptsByTarget[i] ?? 0) + 1;
      let r: SendResult;
      if (attempt === 0) r = await op(senders[i] as Driver);
      else {
        await acquire();
        try {
          r = await op(senders[i] as Driver);
        } finally {
          release();
        }
      }
      if (r.ok) {
        if (attempt > 0) stats.recovered++;
        return r;
      }
      const k = `${i}:${r.code}/${r.reason}`;
      stats.failures.set(k, (stats.failures.get(k) ?? 0) + 1);
      if (!RETRYABLE_CODES.has(r.code) || Date.now() - started > budgetMs) return r;
      stats.retries++;
      // Full jitter below min(2 s, 100 ms * 2^attempt).
      await sleep(Math.random() * Math.min(2_000, 100 * 2 ** attempt));
    }
  };
  return {
    mode: base.mode,
    registerAccount: (req) => base.registerAccount(req),
    registerDevice: (req) => base.registerDevice(req),
    createGroup: (requester, members) => base.createGroup(requester, members),
    subscribe: (device, listener) => base.subscribe(device, listener),
    sendDirect: (m) => retrying((d) => d.sendDirect(m)),
    sendGroup: (m) => retrying((d) => d.sendGroup(m)),
    flushAcks: () => base.flushAcks(),
    async close() {
      await Promise.all(senders.map((d) => d.close()));
    },
  };
}

/** Load options of the fault runs: delivery-stream, open loop, groups, fixed seed. */
export function loadOptions(target: string, name: string): LoadgenOptions {
  return {
    target,
    appTokens: TOKENS,
    devices: SCALE.devices,
    devicesPerAccount: 1,
    mix: [
      { app: "whatsapp", weight: 40 },
      { app: "messenger", weight: 30 },
      { app: "instagram", weight: 30 },
    ],
    groups: 2,
    groupSize: 5,
    groupShare: 0.2,
    sizeBytes: 200,
    ratePerSecond: SCALE.rate,
    closedLoop: false,
    until: "delivered",
    inflight: DEFAULTS.openLoopInflight,
    durationSeconds: SCALE.durationSeconds,
    warmupSeconds: 0,
    mode: "delivery-stream",
    payload: "random",
    signalPoolSize: 4,
    streams: 2,
    gateways: {},
    window: 200,
    messengerSends: "socket",
    serverReceipts: true,
    whatsappConnections: 0,
    whatsappChat: "h2",
    outDir: undefined,
    name,
    watch: [],
    populationFile: undefined,
    registerConcurrency: 8,
    // The drain ends as soon as everything owed arrived; the slack is for a killed instance whose
    // restart (tsx, migrations) takes tens of seconds on a saturated machine.
    drainQuietSeconds: 90,
    drainTimeoutSeconds: 150,
    sendTimeoutSeconds: 10,
    seed: 8,
    intervalMs: 1000,
  };
}

/**
 * Runs the load and, once traffic has started, the fault script beside it. Returns the report
 * once both finished.
 */
export async function runWithFault(
  options: LoadgenOptions,
  driver: (o: LoadgenOptions, l: Logger) => Driver,
  fault: () => Promise<void>,
): Promise<LoadReport> {
  let trafficStarted!: () => void;
  const started = new Promise<void>((resolve) => (trafficStarted = resolve));
  const lines: string[] = [];
  const load = runLoadTest(options, {
    log,
    createDriver: driver,
    progress(line) {
      lines.push(line);
      if (process.env.FAULT_PROGRESS === "1") console.error(`[${options.name}] ${line}`);
      if (line.startsWith("traffic:")) trafficStarted();
    },
  });
  // If setup fails, traffic never starts: surface the setup error instead of waiting forever.
  const faultDone = Promise.race([started.then(fault), load.then(() => undefined)]);
  const [{ report }] = await Promise.all([load, faultDone]);
  return report;
}

/** Prints the fault's figure line and asserts nothing acknowledged was lost, duplicated or reordered. */
export function verdict(fault: string, report: LoadReport): void {
  const v = report.verification;
  const errors = report.errors.byReason.map((e) => `${e.source}:${e.code}/${e.reason}=${e.count}`).join(" ");
  console.log(
    `fault=${fault} sent=${v.sends.issued} acked=${v.sends.confirmed} delivered=${v.delivered} ` +
      `lost=${v.lost} duplicated=${v.duplicates}` +
      ` (failed=${v.sends.failed} unresolved=${v.sends.unresolved} reordered=${v.reordered}` +
      ` redeliveries=${v.redeliveries} unconfirmedDeliveries=${v.unconfirmedDeliveries}` +
      `${errors ? ` errors: ${errors}` : ""})`,
  );
  expect(v.sends.confirmed).toBeGreaterThan(0);
  expect({
    lost: v.lost,
    duplicates: v.duplicates,
    reordered: v.reordered,
    idCollisions: v.idCollisions,
    misrouted: v.misrouted,
    unrecognized: v.unrecognized,
  }).toEqual({ lost: 0, duplicates: 0, reordered: 0, idCollisions: 0, misrouted: 0, unrecognized: 0 });
  expect(v.delivered).toBe(v.expectedDeliveries);
}
