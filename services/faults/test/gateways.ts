// Pieces of the gateway fault scripts: gateway processes (Messenger-style WebSocket, WhatsApp-style
// gRPC Chat stream), devices registered through their native APIs with the SDK transports,
// receivers that reconnect with the SDK's jittered back-off and acknowledge what they get,
// senders that retry with the same client_message_id, a PostgreSQL sampler and the verdict.
import { randomBytes, randomInt } from "node:crypto";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { isAppError, Code } from "@switchboard/errors";
import {
  App,
  EnvelopeType,
  RegisterAccountRequestSchema,
  ResolveHandleRequestSchema,
  SendMessageRequestSchema,
  type Handle,
} from "@switchboard/proto";
import {
  createMessengerTransport,
  createWhatsAppTransport,
  reconnectDelayMs,
  type BackoffBounds,
  type Transport,
} from "@switchboard/sdk";
import {
  freePort,
  startServiceProcess,
  tcpReady,
  type ServiceProcess,
} from "@switchboard/testkit/service-process";
import pg from "pg";
import { expect, onTestFinished } from "vitest";
import { sleep, TOKENS } from "./harness.js";

const SERVICES = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** A gateway process and how to reach it. */
export interface GatewayInstance {
  readonly app: "messenger" | "whatsapp";
  readonly process: ServiceProcess;
  /** Messenger: the HTTP base URL; WhatsApp: the gRPC `host:port`. */
  readonly target: string;
  /** WhatsApp: the dev admin endpoint serving verification codes. */
  readonly adminUrl?: string;
  /** `/metrics` of the process (process_resident_memory_bytes, nodejs_heap_size_used_bytes). */
  readonly metricsUrl: string;
}

/** Starts a gateway process for `app` on `databaseUrl`, linked to `deliveryTarget`; killed after the test. */
export async function startGateway(
  app: "messenger" | "whatsapp",
  databaseUrl: string,
  deliveryTarget: string,
  extraEnv: Record<string, string> = {},
): Promise<GatewayInstance> {
  const common = {
    DATABASE_URL: databaseUrl,
    DELIVERY_TARGET: deliveryTarget,
    DELIVERY_APP_TOKEN: TOKENS[app],
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
    SHUTDOWN_GRACE_MS: "1000",
    ...extraEnv,
  };
  let gw: GatewayInstance;
  if (app === "messenger") {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const proc = await startServiceProcess({
      name: "faults-gateway-messenger",
      cwd: join(SERVICES, "gateway-messenger"),
      env: { ...common, HTTP_HOST: "127.0.0.1", HTTP_PORT: String(port) },
      // The port, not /healthz: after a restart the reconnect storm queues /healthz's database
      // check behind every device's authentication, past the readiness probe's 1 s timeout.
      ready: tcpReady(port),
      readyTimeoutMs: 60_000,
    });
    gw = { app, process: proc, target: base, metricsUrl: `${base}/metrics` };
  } else {
    const [port, adminPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const proc = await startServiceProcess({
      name: "faults-gateway-whatsapp",
      cwd: join(SERVICES, "gateway-whatsapp"),
      env: {
        ...common,
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(port),
        METRICS_PORT: String(metricsPort),
        DEV_ADMIN: "true",
        ADMIN_PORT: String(adminPort),
      },
      ready: async () => (await tcpReady(port)()) && (await tcpReady(adminPort)()),
      readyTimeoutMs: 60_000,
    });
    gw = {
      app,
      process: proc,
      target: `127.0.0.1:${port}`,
      adminUrl: `http://127.0.0.1:${adminPort}`,
      metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    };
  }
  onTestFinished(() => gw.process.stop("SIGKILL"));
  return gw;
}

/** A device registered through a gateway's native API, with its own SDK transport. */
export interface FaultDevice {
  readonly label: string;
  readonly app: "messenger" | "whatsapp";
  readonly transport: Transport;
  readonly accountId: string;
  readonly deviceId: number;
  readonly registrationId: number;
  readonly handle: Handle;
}

/** Registers one account (primary device) through `gw`. */
export async function registerDevice(gw: GatewayInstance, label: string): Promise<FaultDevice> {
  const registrationId = randomInt(1, 16381);
  if (gw.app === "messenger") {
    const transport = createMessengerTransport({ baseUrl: gw.target, callTimeoutMs: 10_000 });
    const r = await transport.registerAccount(
      create(RegisterAccountRequestSchema, { handle: { app: App.MESSENGER, value: "" }, registrationId }),
      { appToken: "" },
    );
    const device = { accountId: r.account!.id, deviceId: r.device!.deviceId };
    transport.setDeviceCredentials({ ...device, password: "" });
    return { label, app: gw.app, transport, ...device, registrationId, handle: r.account!.handle! };
  }
  const phone = `+1555${randomInt(0, 10_000_000).toString().padStart(7, "0")}`;
  const transport = createWhatsAppTransport({
    target: gw.target,
    callTimeoutMs: 10_000,
    async verificationCode(p) {
      const res = await fetch(`${gw.adminUrl}/admin/codes/${encodeURIComponent(p)}`);
      if (!res.ok) throw new Error(`admin endpoint answered ${res.status}`);
      return ((await res.json()) as { code: string }).code;
    },
  });
  const request = create(RegisterAccountRequestSchema, {
    handle: { app: App.WHATSAPP, value: phone },
    registrationId,
  });
  const handle = request.handle!;
  const r = await transport.registerAccount(request, { appToken: "" });
  const device = { accountId: r.account!.id, deviceId: r.device!.deviceId };
  transport.setDeviceCredentials({ ...device, password: "" });
  return { label, app: gw.app, transport, ...device, registrationId, handle };
}

/** Registers `n` devices through `gw`, `concurrency` at a time (registration hashes with scrypt). */
export async function registerDevices(
  gw: GatewayInstance,
  prefix: string,
  n: number,
  concurrency = 8,
): Promise<FaultDevice[]> {
  const out: FaultDevice[] = new Array<FaultDevice>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await registerDevice(gw, `${prefix}${i}`);
      }
    }),
  );
  onTestFinished(async () => {
    await Promise.all(out.map((d) => d?.transport.close().catch(() => undefined)));
  });
  return out;
}

// ---- payloads -------------------------------------------------------------------------------

const MAGIC = "fault:";

/** A message body naming its sender and sequence, padded with random bytes to `sizeBytes`. */
export function payloadOf(runTag: string, sender: number, seq: number, sizeBytes = 160): Uint8Array {
  const head = Buffer.from(`${MAGIC}${runTag}:${sender}:${seq}:`, "utf8");
  return Buffer.concat([head, randomBytes(Math.max(0, sizeBytes - head.length))]);
}

function parsePayload(runTag: string, content: Uint8Array): { sender: number; seq: number } | undefined {
  const text = Buffer.from(content.subarray(0, 80)).toString("latin1");
  const prefix = `${MAGIC}${runTag}:`;
  if (!text.startsWith(prefix)) return undefined;
  const [s, q] = text.slice(prefix.length).split(":");
  const sender = Number(s);
  const seq = Number(q);
  return Number.isInteger(sender) && Number.isInteger(seq) ? { sender, seq } : undefined;
}

// ---- receivers ------------------------------------------------------------------------------

/** What one receiving device saw. */
export interface ReceiverStats {
  /** `sender.seq` of every message, first envelope id that carried it. */
  readonly received: Map<string, string>;
  /** The same envelope id again (an unacknowledged redelivery; the app de-duplicates by id). */
  redeliveries: number;
  /** The same `sender.seq` under a second envelope id: a duplicate the app would show. */
  duplicates: number;
  unrecognized: number;
  /** Subscriptions that reached queue-empty (1 + successful reconnects). */
  drained: number;
  /** When the latest subscription reached queue-empty (performance.now()). */
  drainedAt: number;
  /** Receive failures (each followed by a back-off and a reconnect). */
  failures: number;
  /** Back-off delays slept, ms. */
  readonly backoffMs: number[];
  /** Failures by `CODE/REASON`. */
  readonly errors: Map<string, number>;
}

/** A device's receive loop, as the SDK client runs it (jittered exponential back-off, ack after handling). */
export class Receiver {
  readonly stats: ReceiverStats = {
    received: new Map(),
    redeliveries: 0,
    duplicates: 0,
    unrecognized: 0,
    drained: 0,
    drainedAt: 0,
    failures: 0,
    backoffMs: [],
    errors: new Map(),
  };
  private readonly seenIds = new Set<string>();
  private running = false;
  private loop: Promise<void> | undefined;
  private current: { close(): void } | undefined;
  private wake: (() => void) | undefined;
  /** While true the receiver reads but acknowledges nothing (a consumer that never acks). */
  holdAcks = false;
  private readonly heldAcks: string[] = [];

  constructor(
    readonly device: FaultDevice,
    private readonly runTag: string,
    private readonly bounds: BackoffBounds,
    private readonly window?: number,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.current?.close();
    this.wake?.();
    await this.loop;
  }

  /** Stops holding acknowledgements and sends the held ones. */
  async releaseAcks(): Promise<void> {
    this.holdAcks = false;
    const ids = this.heldAcks.splice(0);
    if (ids.length > 0) await this.device.transport.ack(ids).catch(() => undefined);
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (this.running) {
      const sub = this.device.transport.receive(this.window === undefined ? {} : { window: this.window });
      this.current = sub;
      try {
        for await (const ev of sub) {
          attempt = 0;
          if (ev.kind === "queue_empty") {
            this.stats.drained++;
            this.stats.drainedAt = performance.now();
            continue;
          }
          const env = ev.envelope;
          if (this.seenIds.has(env.id)) this.stats.redeliveries++;
          else {
            this.seenIds.add(env.id);
            const p = parsePayload(this.runTag, env.content);
            if (!p) this.stats.unrecognized++;
            else {
              const key = `${p.sender}.${p.seq}`;
              if (this.stats.received.has(key)) this.stats.duplicates++;
              else this.stats.received.set(key, env.id);
            }
          }
          if (this.holdAcks) this.heldAcks.push(env.id);
          // A lost ack only means a redelivery of the same id later.
          else void this.device.transport.ack([env.id]).catch(() => undefined);
        }
      } catch (err) {
        if (!this.running) break;
        this.stats.failures++;
        const reason = isAppError(err) ? `${Code[err.code]}/${err.reason}` : String(err);
        this.stats.errors.set(reason, (this.stats.errors.get(reason) ?? 0) + 1);
        if (isAppError(err) && err.reason === "DISPLACED") {
          this.running = false;
          break;
        }
        const delay = reconnectDelayMs(attempt++, this.bounds);
        this.stats.backoffMs.push(delay);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      } finally {
        sub.close();
      }
    }
  }
}

// ---- senders --------------------------------------------------------------------------------

/** Limits how many retries are in flight at once (see {@link sendWithRetry}). */
export class RetrySlots {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** Sends and their outcomes, by `sender.seq`. */
export interface SendLedger {
  /** Every send issued: `sender.seq` -> recipient receiver index. */
  readonly issued: Map<string, number>;
  /** Sends answered "sent" (committed). */
  readonly acked: Set<string>;
  /** Sends that never got a "sent" within their retry budget. */
  readonly failed: Map<string, string>;
  /** Attempts beyond the first (each with the same client_message_id). */
  retries: number;
  /** Outcomes "sent" with duplicate=true (an earlier attempt had committed). */
  serverDeduplicated: number;
  /** Wall time of the slowest send, first attempt to its result (retries included), ms. */
  maxSendMs: number;
  /**
   * Retries in flight at once, shared by all senders: without a cap every send issued during an
   * outage is retried at the same moment when the service returns, times out behind the others
   * and is retried again.
   */
  readonly retrySlots: RetrySlots;
}

const RETRYABLE = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
]);

/**
 * Sends one message, retrying retryable failures (gateway down, link reconnecting, timeouts) with
 * jittered back-off and the SAME client_message_id until `budgetMs` is spent: the server's
 * idempotency turns a retry of a committed send into a "sent" with duplicate=true.
 */
export async function sendWithRetry(
  from: FaultDevice,
  to: FaultDevice,
  content: Uint8Array,
  clientMessageId: string,
  ledger: SendLedger,
  key: string,
  budgetMs = 300_000,
): Promise<void> {
  const request = create(SendMessageRequestSchema, {
    destinationAccountId: to.accountId,
    messages: [
      { deviceId: to.deviceId, registrationId: to.registrationId, type: EnvelopeType.CIPHERTEXT, content },
    ],
    clientMessageId,
    clientTimestampMs: BigInt(Date.now()),
  });
  const started = performance.now();
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) ledger.retries++;
    let retryable: string;
    try {
      const outcome =
        attempt === 0
          ? await from.transport.sendMessage(request)
          : await ledger.retrySlots.run(() => from.transport.sendMessage(request));
      if (outcome.kind === "sent") {
        ledger.acked.add(key);
        if (outcome.duplicate) ledger.serverDeduplicated++;
        ledger.maxSendMs = Math.max(ledger.maxSendMs, performance.now() - started);
        return;
      }
      ledger.failed.set(key, `OUTCOME/${outcome.kind}`);
      return;
    } catch (err) {
      const transient =
        isAppError(err) &&
        (RETRYABLE.has(err.code) || err.reason === "GATEWAY_UNREACHABLE" || err.reason === "STREAM_FAILED");
      const reason = isAppError(err) ? `${Code[err.code]}/${err.reason}` : String(err);
      if (!transient) {
        ledger.failed.set(key, reason);
        return;
      }
      retryable = reason;
    }
    if (performance.now() - started > budgetMs) {
      ledger.failed.set(key, `GAVE_UP/${retryable}`);
      return;
    }
    await sleep(reconnectDelayMs(attempt, { initial: 200, max: 2_000 }));
  }
}

/** Lets WhatsApp-style senders address `receivers` (the transport needs each handle once). */
export async function introduce(sender: FaultDevice, receivers: FaultDevice[]): Promise<void> {
  if (sender.app !== "whatsapp") return;
  for (const r of receivers)
    await sender.transport.resolveHandle(create(ResolveHandleRequestSchema, { handle: r.handle }));
}

// ---- PostgreSQL and process samplers ----------------------------------------------------------

/** Samples of the test database's sessions and a probe query's latency. */
export interface PgSampler {
  /** Most sessions on the database at once (pg_stat_activity), and most of them active. */
  readonly maxConnections: number;
  readonly maxActive: number;
  /** Slowest probe (a queue read by primary key range), ms, and probes taken. */
  readonly maxProbeMs: number;
  readonly probes: number;
  /** Resets the maxima (e.g. at the start of the storm). */
  reset(): void;
  stop(): Promise<void>;
}

/**
 * Every `intervalMs`, counts the database's sessions in pg_stat_activity (excluding the sampler's
 * own) and times a probe: the query a subscription runs to read a device's queue.
 */
export function samplePostgres(databaseUrl: string, databaseName: string, intervalMs = 50): PgSampler {
  const client = new pg.Client({ connectionString: databaseUrl });
  const state = { maxConnections: 0, maxActive: 0, maxProbeMs: 0, probes: 0 };
  let stopped = false;
  const done = (async () => {
    await client.connect();
    while (!stopped) {
      const t = performance.now();
      await client.query(
        "SELECT seq FROM queued_messages WHERE account_id = $1 AND device_id = 1 AND seq > 0 ORDER BY seq LIMIT 50",
        ["00000000-0000-0000-0000-000000000000"],
      );
      const ms = performance.now() - t;
      const r = await client.query<{ total: string; active: string }>(
        `SELECT count(*) AS total, count(*) FILTER (WHERE state = 'active') AS active
           FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [databaseName],
      );
      state.probes++;
      state.maxProbeMs = Math.max(state.maxProbeMs, ms);
      state.maxConnections = Math.max(state.maxConnections, Number(r.rows[0]?.total ?? 0));
      state.maxActive = Math.max(state.maxActive, Number(r.rows[0]?.active ?? 0));
      await sleep(intervalMs);
    }
    await client.end();
  })();
  return {
    get maxConnections() {
      return state.maxConnections;
    },
    get maxActive() {
      return state.maxActive;
    },
    get maxProbeMs() {
      return state.maxProbeMs;
    },
    get probes() {
      return state.probes;
    },
    reset() {
      Object.assign(state, { maxConnections: 0, maxActive: 0, maxProbeMs: 0 });
    },
    async stop() {
      stopped = true;
      await done;
    },
  };
}

/** A process's memory from its Prometheus `/metrics` (prom-client default metrics), MiB. */
export async function memoryOf(metricsUrl: string): Promise<{ rssMiB: number; heapMiB: number }> {
  const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(5_000) })).text();
  const value = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, "m").exec(text);
    return m ? Number(m[1]) / 2 ** 20 : NaN;
  };
  return { rssMiB: value("process_resident_memory_bytes"), heapMiB: value("nodejs_heap_size_used_bytes") };
}

/** A run-unique tag for payloads and client message ids. */
export const runTagOf = () => randomBytes(4).toString("hex");

// ---- verdict --------------------------------------------------------------------------------

/** Totals over a ledger and receivers: lost (acknowledged, never delivered) and duplicated. */
export function tally(ledger: SendLedger, receivers: Receiver[]) {
  let delivered = 0;
  let duplicated = 0;
  let redeliveries = 0;
  let unrecognized = 0;
  let lost = 0;
  for (const r of receivers) {
    delivered += r.stats.received.size;
    duplicated += r.stats.duplicates;
    redeliveries += r.stats.redeliveries;
    unrecognized += r.stats.unrecognized;
  }
  for (const key of ledger.acked) {
    const to = ledger.issued.get(key);
    if (to === undefined || !receivers[to]?.stats.received.has(key)) lost++;
  }
  return {
    sent: ledger.issued.size,
    acked: ledger.acked.size,
    failed: ledger.failed.size,
    delivered,
    lost,
    duplicated,
    redeliveries,
    unrecognized,
  };
}

/** Asserts nothing acknowledged was lost or duplicated and nothing unexpected arrived. */
export function expectClean(t: ReturnType<typeof tally>): void {
  expect(t.acked).toBeGreaterThan(0);
  expect({ lost: t.lost, duplicated: t.duplicated, unrecognized: t.unrecognized }).toEqual({
    lost: 0,
    duplicated: 0,
    unrecognized: 0,
  });
}

/** One line summarising receivers: how many drained at least `minDrained` times, failures by reason. */
export function describeReceivers(receivers: Receiver[], minDrained: number): string {
  const errors = new Map<string, number>();
  for (const r of receivers) for (const [k, v] of r.stats.errors) errors.set(k, (errors.get(k) ?? 0) + v);
  const ok = receivers.filter((r) => r.stats.drained >= minDrained).length;
  return `drained ${ok}/${receivers.length}; failures ${[...errors].map(([k, v]) => `${k}=${v}`).join(" ")}`;
}

/** Waits until `done()` or `timeoutMs`; returns whether it became true. */
export async function waitFor(done: () => boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > until) return false;
    await sleep(stepMs);
  }
  return true;
}
