// Delivery benchmark: one in-process delivery instance over real PostgreSQL and Redis, driven
// through the Connect stream the way gateways use it (an app credential multiplexing many
// devices). Prints sends/s, deliveries/s and send→receive latency percentiles.
//
//   pnpm bench [-- --devices 1000 --seconds 10 --inflight 2000 --size 256 --streams 4 --instances 1]
//
// The main figure is `server.cpuMicrosPerDelivery`: user+system CPU of the delivery process(es)
// during the measured window (from /proc/<pid>/stat) per delivered message. Unlike msg/s it
// hardly depends on what else runs on the machine; the load average is printed next to it.
//
// Needs DATABASE_URL (a role that may CREATE DATABASE) and REDIS_URL; defaults to the local ones.
import { randomUUID } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { createRedisFanout } from "@switchboard/fanout";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type BidiStream } from "@switchboard/grpc";
import {
  App,
  EnvelopeType,
  MessageService,
  type ConnectRequestSchema,
  type ConnectResponse,
  type ConnectResponseSchema,
} from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import { Redis } from "ioredis";
import { sql } from "kysely";
import pg from "pg";
import pino from "pino";
import { buildApp } from "../src/app.js";
import { hashPassword } from "../src/auth/password.js";
import { freePort } from "@switchboard/testkit/service-process";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    devices: { type: "string", default: "1000" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    inflight: { type: "string", default: "2000" },
    size: { type: "string", default: "256" },
    streams: { type: "string", default: "4" },
    lanes: { type: "string", default: "1" },
    /** Delivery child processes sharing PostgreSQL and Redis; streams are spread over them. */
    instances: { type: "string", default: "1" },
    /**
     * Fixed-work mode: send this many messages (after a quarter as many to warm up), wait until
     * all are delivered, acknowledged and receipted, and report CPU per message over exactly that
     * work. Robust on a busy machine, where a timed window is not in steady state. 0: timed mode.
     */
    messages: { type: "string", default: "0" },
    /** First port of the children (gRPC; metrics +1, next instance +2); default random. */
    port: { type: "string", default: "0" },
    /** Run the delivery service as a child process (its own event loop and CPU), like production. */
    "separate-process": { type: "boolean", default: true },
    /**
     * Batch frames both ways (ConnectRequestBatch / ConnectResponseBatch, as the gateways'
     * delivery link does); `--frame-batching off` sends and receives one frame per stream message.
     */
    "frame-batching": { type: "string", default: "on" },
    /**
     * `off` sends with `no_delivery_receipt` (clients that send their own end-to-end receipts):
     * acknowledging a message then queues no SERVER_DELIVERY_RECEIPT for its sender.
     */
    "server-receipts": { type: "string", default: "on" },
    /**
     * Node flags of the child; the default is `pnpm start`'s (a 64 MiB young generation, garbage
     * collection on the main thread only). Add more (e.g.
     * `--server-node-flags="--max-semi-space-size=64 --single-threaded-gc --cpu-prof"`), or pass an
     * empty value for V8's defaults.
     */
    "server-node-flags": { type: "string", default: "--max-semi-space-size=64 --single-threaded-gc" },
  },
});
const DEVICES = Number(args.devices);
const SECONDS = Number(args.seconds);
const WARMUP = Number(args.warmup);
const INFLIGHT = Number(args.inflight);
const SIZE = Number(args.size);
const STREAMS = Number(args.streams);
const INSTANCES = Math.max(1, Number(args.instances));
const MESSAGES = Number(args.messages);
const BATCHING = args["frame-batching"] !== "off";
const RECEIPTS = args["server-receipts"] !== "off";

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
if (process.env.BENCH_SQL) await sql.raw(process.env.BENCH_SQL).execute(db);

const log = pino({ level: process.env.LOG_LEVEL ?? "warn" });
const SEPARATE = args["separate-process"];
const serverPort = Number(args.port) || (await freePort());
const children: ChildProcess[] = [];
const metricsPorts: number[] = [];
const targets: string[] = [];
const fanoutPrefix = `bench${Date.now()}:`;
const fanout = await createRedisFanout({ url: redisUrl, keyPrefix: fanoutPrefix });
if (!SEPARATE && INSTANCES > 1) throw new Error("--instances > 1 needs --separate-process");
const app = SEPARATE
  ? undefined
  : buildApp({
      config: {
        APP_TOKENS: [{ app: App.WHATSAPP, providerId: "", token: TOKEN }],
        MAX_CIPHERTEXT_BYTES: 256 * 1024,
        QUEUE_TTL_SECONDS: 3600,
        MAX_QUEUE_LENGTH: 100_000,
        SEND_BATCH_MAX: 2_000,
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
if (app) {
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  targets.push(`127.0.0.1:${port}`);
} else {
  const flags = args["server-node-flags"].split(" ").filter(Boolean);
  for (let n = 0; n < INSTANCES; n++) {
    const grpcPort = serverPort + 2 * n;
    const metricsPort = grpcPort + 1;
    children.push(
      spawn(
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
            GRPC_PORT: String(grpcPort),
            METRICS_PORT: String(metricsPort),
            SEND_LANES: args.lanes,
            MAX_QUEUE_LENGTH: "100000",
            ACK_BATCH_MAX: "4000",
            INSTANCE_ID: `bench-${n}`,
            // Its own channels: other delivery processes on this Redis do not wake the bench's.
            REDIS_KEY_PREFIX: fanoutPrefix,
            LOG_LEVEL: "warn",
          },
        },
      ),
    );
    metricsPorts.push(metricsPort);
    targets.push(`127.0.0.1:${grpcPort}`);
  }
  for (const metricsPort of metricsPorts) {
    for (let i = 0; ; i++) {
      const ok = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (i > 300) throw new Error("delivery child did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** CPU seconds (user, system) a child has used so far, from /proc/<pid>/stat (Linux). */
function childCpuSeconds(pid: number | undefined): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 (utime, stime) in clock ticks; USER_HZ is 100 on Linux.
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
  } catch {
    return { user: NaN, system: NaN };
  }
}
const childrenCpu = () =>
  children.reduce(
    (sum, c) => {
      const t = childCpuSeconds(c.pid);
      return { user: sum.user + t.user, system: sum.system + t.system };
    },
    { user: 0, system: 0 },
  );

/**
 * CPU seconds used so far by the PostgreSQL backends serving the bench's database (per pid, so a
 * backend that appears later counts from zero) — the other side of every statement the delivery
 * service issues. Background processes (WAL writer, checkpointer) are shared and not counted.
 */
async function postgresCpu(): Promise<Map<number, number>> {
  const r = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1", [
    dbName,
  ]);
  const out = new Map<number, number>();
  for (const { pid } of r.rows) {
    const t = childCpuSeconds(pid);
    if (Number.isFinite(t.user)) out.set(pid, t.user + t.system);
  }
  return out;
}
const cpuDelta = (a: Map<number, number>, b: Map<number, number>) =>
  [...b].reduce((sum, [pid, t]) => sum + t - (a.get(pid) ?? 0), 0);
/** CPU seconds of the Redis server (shared with anything else using it on this machine). */
async function redisCpu(): Promise<number> {
  const redis = new Redis(redisUrl, { lazyConnect: true });
  await redis.connect();
  const info = await redis.info("server");
  redis.disconnect();
  const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
  const t = childCpuSeconds(pid);
  return t.user + t.system;
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

/**
 * Opens a Connect stream; with frame batching, frames sent in one event-loop turn go out as one
 * ConnectRequestBatch and response batches are flattened, so the code below sees single frames.
 */
function openStream(client: (typeof clients)[number]): Stream {
  if (!BATCHING) return client.connect();
  const stream = client.connect({ metadata: { "switchboard-frame-batching": "1" } });
  let outbox: Array<MessageInitShape<typeof ConnectRequestSchema>> = [];
  const flush = () => {
    const frames = outbox;
    outbox = [];
    const sent =
      frames.length === 1
        ? stream.send(frames[0]!)
        : stream.send({ frame: { case: "batch", value: { frames } } });
    sent.catch(() => undefined); // cancelled at the end
  };
  async function* flat(): AsyncGenerator<ConnectResponse> {
    for await (const f of stream.responses) {
      if (f.frame.case === "batch") yield* f.frame.value.frames;
      else yield f;
    }
  }
  return {
    ...stream,
    send(frame) {
      if (outbox.push(frame) === 1) setImmediate(flush);
      else if (outbox.length >= 500) {
        flush();
      }
      return Promise.resolve();
    },
    responses: flat(),
  };
}
const clients = targets.map((target) =>
  createClient(MessageService, target, {
    metadata: () => ({ authorization: `Bearer ${TOKEN}` }),
  }),
);
const sentAt = new Map<string, number>();
const latencies: number[] = [];
let measuring = false;
let delivered = 0;
/** First deliveries of messages sent by this run, measured or not. */
let receivedTotal = 0;
/** Delivery frames whose client_message_id was already received (must stay 0). */
let duplicates = 0;
const seen = new Set<string>();
let sent = 0;
let errors = 0;

// Receivers: STREAMS multiplexed streams; acks flushed every 5 ms per stream.
const receivers: Stream[] = [];
let subscribedQueues = 0;
for (let s = 0; s < STREAMS; s++) {
  const stream = openStream(clients[s % clients.length]!);
  receivers.push(stream);
  const pendingAcks = new Map<string, string[]>();
  setInterval(() => {
    for (const [acct, ids] of pendingAcks) {
      stream
        .send({
          frame: { case: "ack", value: { device: { accountId: acct, deviceId: 1 }, messageIds: ids } },
        })
        .catch(() => undefined); // cancelled at the end
    }
    pendingAcks.clear();
  }, 5).unref();
  void (async () => {
    for await (const f of stream.responses) {
      if (f.frame.case === "delivery") {
        const env = f.frame.value;
        if (seen.has(env.clientMessageId)) duplicates++;
        else seen.add(env.clientMessageId);
        const t0 = sentAt.get(env.clientMessageId);
        if (t0 !== undefined) {
          sentAt.delete(env.clientMessageId);
          receivedTotal++;
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
/** In fixed-work mode, how many sends to issue in all so far. */
let sendLimit = Infinity;
function pump() {
  while (!stopping && inflight < INFLIGHT && corr < sendLimit) {
    const p = pairs[next++ % pairs.length]!;
    const cmid = randomUUID();
    const stream = senders[corr % STREAMS]!;
    corr++;
    inflight++;
    sentAt.set(cmid, performance.now());
    stream
      .send({
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
              noDeliveryReceipt: !RECEIPTS,
            },
          },
        },
      })
      .catch(() => undefined); // cancelled at the end
  }
}
for (let s = 0; s < STREAMS; s++) {
  // Senders start on the next instance, so with several instances most messages cross instances.
  const stream = openStream(clients[(s + 1) % clients.length]!);
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
/** Fixed-work mode: issues `count` more sends and waits until they are delivered, acked and receipted. */
async function runMessages(count: number) {
  const before = await serverStats();
  const target = receivedTotal + count;
  sendLimit = corr + count;
  pump();
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    if (receivedTotal < target) continue;
    const now = await serverStats();
    if (
      (now.acks ?? 0) - (before.acks ?? 0) >= count &&
      (!RECEIPTS || (now.receipts ?? 0) - (before.receipts ?? 0) >= count)
    )
      break;
  }
  await new Promise((r) => setTimeout(r, 300)); // the receipts' commit
}
if (MESSAGES > 0) await runMessages(Math.ceil(MESSAGES / 4));
else {
  pump();
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
}
const server0 = await serverStats();
const childCpu0 = childrenCpu();
const pgCpu0 = await postgresCpu();
const redisCpu0 = await redisCpu();
const load0 = loadavg()[0]!;
const driverCpu0 = process.cpuUsage();
measuring = true;
const t0 = performance.now();
const progress = setInterval(() => {
  const s = (performance.now() - t0) / 1000;
  process.stderr.write(
    `\r${s.toFixed(0)}s  sent ${(sent / s).toFixed(0)}/s  delivered ${(delivered / s).toFixed(0)}/s  errors ${errors}   `,
  );
}, 1000);
if (MESSAGES > 0) await runMessages(MESSAGES);
else await new Promise((r) => setTimeout(r, SECONDS * 1000));
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
clearInterval(progress);
const childCpu1 = childrenCpu();
const pgCpu1 = await postgresCpu();
const redisCpu1 = await redisCpu();
const server1 = await serverStats();
const load1 = loadavg()[0]!;
stopping = true;
const cpu = process.cpuUsage(cpu0);
const driverCpu = process.cpuUsage(driverCpu0);

async function serverStats(): Promise<Record<string, number>> {
  if (!app) {
    const sum: Record<string, number> = {};
    for (const metricsPort of metricsPorts) {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const pick = (name: string) =>
        Number(
          /^(\S+)(?:\{[^}]*\})? (\S+)$/m.exec(
            text
              .split("\n")
              .filter((l) => l.startsWith(name))
              .join("\n"),
          )?.[2] ?? 0,
        );
      const one = {
        commitBatches: pick("switchboard_send_batch_size_count"),
        commitBatchSends: pick("switchboard_send_batch_size_sum"),
        queueReads: pick("switchboard_queue_reads_total"),
        deliveries: pick("switchboard_deliveries_total"),
        acks: pick("switchboard_acks_total"),
        receipts: pick("switchboard_delivery_receipts_total"),
      };
      for (const [k, v] of Object.entries(one)) sum[k] = (sum[k] ?? 0) + v;
    }
    return sum;
  }
  const value = async (
    m: { get(): Promise<{ values: Array<{ value: number; metricName?: string }> }> },
    suffix = "",
  ) => (await m.get()).values.find((v) => (suffix ? v.metricName?.endsWith(suffix) : true))?.value ?? 0;
  return {
    commitBatches: await value(app.metrics.commitBatchSize, "_count"),
    commitBatchSends: await value(app.metrics.commitBatchSize, "_sum"),
    queueReads: await value(app.metrics.queueReads),
    deliveries: await value(app.metrics.deliveries),
    acks: await value(app.metrics.acks),
    receipts: await value(app.metrics.receipts),
  };
}
const delta: Record<string, number> = {};
for (const [k, v] of Object.entries(server1)) delta[k] = v - (server0[k] ?? 0);
const serverDeliveries = delta.deliveries ?? 0;
const cpuUser = childCpu1.user - childCpu0.user;
const cpuSystem = childCpu1.system - childCpu0.system;

latencies.sort((a, b) => a - b);
const pct = (q: number) =>
  latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! : NaN;
process.stderr.write("\n");
console.log(
  JSON.stringify(
    {
      benchmark: `delivery send→commit→push→ack, ${INSTANCES} instance(s), Connect streams`,
      instances: INSTANCES,
      loadAverage1m: { start: +load0.toFixed(2), end: +load1.toFixed(2) },
      devices: DEVICES,
      pairs: pairs.length,
      streams: STREAMS,
      inflight: INFLIGHT,
      payloadBytes: SIZE,
      serverReceipts: RECEIPTS,
      seconds: Number(elapsed.toFixed(1)),
      sendsPerSecond: Math.round(sent / elapsed),
      deliveriesPerSecond: Math.round(delivered / elapsed),
      errors,
      duplicates,
      latencyMs: {
        p50: +pct(0.5).toFixed(1),
        p90: +pct(0.9).toFixed(1),
        p99: +pct(0.99).toFixed(1),
        max: +(latencies.at(-1) ?? NaN).toFixed(1),
      },
      benchProcessCpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(1)),
      // CPU per delivered message of every process on the path; the sum bounds what the box can
      // deliver (2 cores: at most 2,000,000 µs/s ÷ total µs per message).
      cpuMicrosPerMessage: ((parts: Record<string, number>) => ({
        ...parts,
        total: Object.values(parts).reduce((a, b) => a + b, 0),
      }))({
        delivery: Math.round(((cpuUser + cpuSystem) * 1e6) / Math.max(1, serverDeliveries)),
        postgres: Math.round((cpuDelta(pgCpu0, pgCpu1) * 1e6) / Math.max(1, serverDeliveries)),
        redis: Math.round(((redisCpu1 - redisCpu0) * 1e6) / Math.max(1, serverDeliveries)),
        benchDriver: Math.round((driverCpu.user + driverCpu.system) / Math.max(1, serverDeliveries)),
      }),
      server: {
        // Counters over the measured window, summed over instances.
        commitBatches: delta.commitBatches,
        avgSendsPerCommit: +((delta.commitBatchSends ?? 0) / Math.max(1, delta.commitBatches ?? 0)).toFixed(
          1,
        ),
        queueReads: delta.queueReads,
        deliveries: serverDeliveries,
        acks: delta.acks,
        receipts: delta.receipts,
        ...(children.length > 0
          ? {
              cpuUserSeconds: +cpuUser.toFixed(2),
              cpuSystemSeconds: +cpuSystem.toFixed(2),
              cpuCoresBusy: +((cpuUser + cpuSystem) / elapsed).toFixed(2),
              cpuMicrosPerDelivery: +(((cpuUser + cpuSystem) * 1e6) / Math.max(1, serverDeliveries)).toFixed(
                0,
              ),
              cpuUserMicrosPerDelivery: +((cpuUser * 1e6) / Math.max(1, serverDeliveries)).toFixed(0),
              cpuMicrosPerAck: +(((cpuUser + cpuSystem) * 1e6) / Math.max(1, delta.acks ?? 0)).toFixed(0),
            }
          : {}),
      },
    },
    null,
    2,
  ),
);

for (const s of [...senders, ...receivers]) s.cancel();
for (const c of clients) c.close();
await app?.close(500);
await Promise.all(
  children.map(async (c) => {
    c.kill("SIGINT");
    await new Promise((r) => c.once("exit", r));
  }),
);
await fanout.close();
await db.destroy();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
await admin.end();
process.exit(0);
