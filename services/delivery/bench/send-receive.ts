// Delivery benchmark: one in-process delivery instance over real PostgreSQL and Redis, driven
// through the Connect stream the way gateways use it (an app credential multiplexing many
// devices). Prints sends/s, deliveries/s and send→receive latency percentiles.
//
//   pnpm bench [-- --devices 1000 --seconds 10 --inflight 2000 --size 256 --streams 4]
//
// Needs DATABASE_URL (a role that may CREATE DATABASE) and REDIS_URL; defaults to the local ones.
import { randomUUID } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { parseArgs } from "node:util";
import { createRedisFanout } from "@switchboard/fanout";
import { createClient, type BidiStream } from "@switchboard/grpc";
import {
  App,
  EnvelopeType,
  MessageService,
  type ConnectRequestSchema,
  type ConnectResponseSchema,
} from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import pg from "pg";
import pino from "pino";
import { buildApp } from "../src/app.js";
import { hashPassword } from "../src/auth/password.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    devices: { type: "string", default: "1000" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    inflight: { type: "string", default: "2000" },
    size: { type: "string", default: "256" },
    streams: { type: "string", default: "4" },
    lanes: { type: "string", default: "4" },
    /** Run the delivery service as a child process (its own event loop and CPU), like production. */
    "separate-process": { type: "boolean", default: true },
    /** Extra node flags for the child (e.g. --cpu-prof). */
    "server-node-flags": { type: "string", default: "" },
  },
});
const DEVICES = Number(args.devices);
const SECONDS = Number(args.seconds);
const WARMUP = Number(args.warmup);
const INFLIGHT = Number(args.inflight);
const SIZE = Number(args.size);
const STREAMS = Number(args.streams);

const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const dbName = `sb_bench_${Date.now()}`;
const TOKEN = "bench-token-0123456789abcdef";

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const url = new URL(adminUrl);
url.pathname = `/${dbName}`;
const db = createDatabase({ url: url.toString(), poolSize: 12 });
await migrateToLatest(db);

const log = pino({ level: process.env.LOG_LEVEL ?? "warn" });
const SEPARATE = args["separate-process"];
const serverPort = 40000 + Math.floor(Math.random() * 10000);
const metricsPort = serverPort + 1;
let child: ChildProcess | undefined;
const fanout = await createRedisFanout({ url: redisUrl, keyPrefix: `bench${Date.now()}:` });
const app = SEPARATE
  ? undefined
  : buildApp({
      config: {
        APP_TOKENS: [{ app: App.WHATSAPP, providerId: "", token: TOKEN }],
        MAX_CIPHERTEXT_BYTES: 256 * 1024,
        QUEUE_TTL_SECONDS: 3600,
        MAX_QUEUE_LENGTH: 100_000,
        SEND_BATCH_MAX: 500,
        SEND_LANES: Number(args.lanes),
        ACK_BATCH_MAX: 4000,
        STREAM_POLL_MS: 15_000,
        MAX_DEVICES: 6,
        MAX_GROUP_MEMBERS: 1000,
        INSTANCE_ID: "bench",
      },
      db,
      fanout,
      log,
      collectDefaultMetrics: false,
    });
let target: string;
if (app) {
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  target = `127.0.0.1:${port}`;
} else {
  const flags = args["server-node-flags"].split(" ").filter(Boolean);
  child = spawn(
    process.execPath,
    [...flags, "--conditions=switchboard-source", "--import", "tsx", "src/main.ts"],
    {
      stdio: ["ignore", "ignore", "inherit"],
      env: {
        ...process.env,
        DATABASE_URL: url.toString(),
        REDIS_URL: redisUrl,
        APP_TOKENS: `whatsapp=${TOKEN}`,
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(serverPort),
        METRICS_PORT: String(metricsPort),
        SEND_LANES: args.lanes,
        MAX_QUEUE_LENGTH: "100000",
        ACK_BATCH_MAX: "4000",
        LOG_LEVEL: "warn",
      },
    },
  );
  target = `127.0.0.1:${serverPort}`;
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i > 200) throw new Error("delivery child did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Devices: half send, half receive (pairs). Inserted directly: registration is not measured.
const hash = await hashPassword(randomUUID());
const accounts: Array<{ id: string; reg: number }> = [];
for (let i = 0; i < DEVICES; i++) {
  const id = randomUUID();
  const reg = 1 + (i % 16000);
  await insertAccount(db, {
    id,
    app: App.WHATSAPP,
    providerId: "",
    handle: `+1555${String(i).padStart(7, "0")}`,
    registrationId: reg,
    deviceName: "",
    passwordHash: hash,
  });
  accounts.push({ id, reg });
}
const pairs = Array.from({ length: Math.floor(DEVICES / 2) }, (_, i) => ({
  from: accounts[2 * i]!,
  to: accounts[2 * i + 1]!,
}));

type Stream = BidiStream<typeof ConnectRequestSchema, typeof ConnectResponseSchema>;
const client = createClient(MessageService, target, {
  metadata: () => ({ authorization: `Bearer ${TOKEN}` }),
});
const sentAt = new Map<string, number>();
const latencies: number[] = [];
let measuring = false;
let delivered = 0;
let sent = 0;
let errors = 0;

// Receivers: STREAMS multiplexed streams; acks flushed every 5 ms per stream.
const receivers: Stream[] = [];
let subscribedQueues = 0;
for (let s = 0; s < STREAMS; s++) {
  const stream = client.connect();
  receivers.push(stream);
  const pendingAcks = new Map<string, string[]>();
  setInterval(() => {
    for (const [acct, ids] of pendingAcks) {
      void stream.send({
        frame: { case: "ack", value: { device: { accountId: acct, deviceId: 1 }, messageIds: ids } },
      });
    }
    pendingAcks.clear();
  }, 5).unref();
  void (async () => {
    for await (const f of stream.responses) {
      if (f.frame.case === "delivery") {
        const env = f.frame.value;
        const t0 = sentAt.get(env.clientMessageId);
        if (t0 !== undefined) {
          sentAt.delete(env.clientMessageId);
          if (measuring) {
            delivered++;
            latencies.push(performance.now() - t0);
          }
        }
        const acct = env.destination?.accountId ?? "";
        const list = pendingAcks.get(acct) ?? [];
        list.push(env.id);
        pendingAcks.set(acct, list);
      } else if (f.frame.case === "queueEmpty") subscribedQueues++;
    }
  })().catch(() => undefined); // streams are cancelled at the end
}
pairs.forEach((p, i) => {
  void receivers[i % STREAMS]!.send({
    frame: { case: "subscribe", value: { device: { accountId: p.to.id, deviceId: 1 }, window: 1000 } },
  });
});
while (subscribedQueues < pairs.length) await new Promise((r) => setTimeout(r, 20));

// Senders: closed loop with INFLIGHT outstanding sends spread over STREAMS streams.
const payload = Buffer.alloc(SIZE, 7);
let inflight = 0;
let corr = 0;
let stopping = false;
const senders: Stream[] = [];
let next = 0;
function pump() {
  while (!stopping && inflight < INFLIGHT) {
    const p = pairs[next++ % pairs.length]!;
    const cmid = randomUUID();
    const stream = senders[corr % STREAMS]!;
    corr++;
    inflight++;
    sentAt.set(cmid, performance.now());
    void stream.send({
      frame: {
        case: "send",
        value: {
          correlationId: BigInt(corr),
          request: {
            sender: { accountId: p.from.id, deviceId: 1 },
            destinationAccountId: p.to.id,
            messages: [
              { deviceId: 1, registrationId: p.to.reg, type: EnvelopeType.CIPHERTEXT, content: payload },
            ],
            clientMessageId: cmid,
          },
        },
      },
    });
  }
}
for (let s = 0; s < STREAMS; s++) {
  const stream = client.connect();
  senders.push(stream);
  void (async () => {
    for await (const f of stream.responses) {
      if (f.frame.case === "sendResult") {
        inflight--;
        if (f.frame.value.result.case === "send" && f.frame.value.result.value.result.case === "sent") {
          if (measuring) sent++;
        } else if (measuring) errors++;
        pump();
      }
    }
  })().catch(() => undefined);
}

const cpu0 = process.cpuUsage();
pump();
await new Promise((r) => setTimeout(r, WARMUP * 1000));
measuring = true;
const t0 = performance.now();
const progress = setInterval(() => {
  const s = (performance.now() - t0) / 1000;
  process.stderr.write(
    `\r${s.toFixed(0)}s  sent ${(sent / s).toFixed(0)}/s  delivered ${(delivered / s).toFixed(0)}/s  errors ${errors}   `,
  );
}, 1000);
await new Promise((r) => setTimeout(r, SECONDS * 1000));
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
clearInterval(progress);
stopping = true;
const cpu = process.cpuUsage(cpu0);

async function serverStats() {
  if (!app) {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const pick = (name: string) =>
      Number(
        /^(\S+)\{[^}]*\} (\S+)$/m.exec(
          text
            .split("\n")
            .filter((l) => l.startsWith(name))
            .join("\n"),
        )?.[2] ?? 0,
      );
    const batches = pick("switchboard_send_batch_size_count");
    return {
      commitBatches: batches,
      avgSendsPerCommit: +(pick("switchboard_send_batch_size_sum") / Math.max(1, batches)).toFixed(1),
      queueReads: pick("switchboard_queue_reads_total"),
      deliveries: pick("switchboard_deliveries_total"),
      acks: pick("switchboard_acks_total"),
      processCpuSeconds: pick("process_cpu_seconds_total"),
      processCpuUserSeconds: pick("process_cpu_user_seconds_total"),
      processCpuSystemSeconds: pick("process_cpu_system_seconds_total"),
    };
  }
  const value = async (
    m: { get(): Promise<{ values: Array<{ value: number; metricName?: string }> }> },
    suffix = "",
  ) => (await m.get()).values.find((v) => (suffix ? v.metricName?.endsWith(suffix) : true))?.value ?? 0;
  const batches = await value(app.metrics.commitBatchSize, "_count");
  const batched = await value(app.metrics.commitBatchSize, "_sum");
  return {
    commitBatches: batches,
    avgSendsPerCommit: +(batched / Math.max(1, batches)).toFixed(1),
    queueReads: await value(app.metrics.queueReads),
    deliveries: await value(app.metrics.deliveries),
    acks: await value(app.metrics.acks),
  };
}

latencies.sort((a, b) => a - b);
const pct = (q: number) =>
  latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! : NaN;
process.stderr.write("\n");
console.log(
  JSON.stringify(
    {
      benchmark: "delivery send→commit→push→ack, one instance, Connect streams",
      devices: DEVICES,
      pairs: pairs.length,
      streams: STREAMS,
      inflight: INFLIGHT,
      payloadBytes: SIZE,
      seconds: Number(elapsed.toFixed(1)),
      sendsPerSecond: Math.round(sent / elapsed),
      deliveriesPerSecond: Math.round(delivered / elapsed),
      errors,
      latencyMs: {
        p50: +pct(0.5).toFixed(1),
        p90: +pct(0.9).toFixed(1),
        p99: +pct(0.99).toFixed(1),
        max: +(latencies.at(-1) ?? NaN).toFixed(1),
      },
      benchProcessCpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(1)),
      server: await serverStats(),
    },
    null,
    2,
  ),
);

for (const s of [...senders, ...receivers]) s.cancel();
client.close();
await app?.close(500);
if (child) {
  child.kill("SIGINT");
  await new Promise((r) => child?.once("exit", r));
}
await fanout.close();
await db.destroy();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
await admin.end();
process.exit(0);
