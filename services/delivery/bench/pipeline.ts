// Micro-benchmark of the group-commit send pipeline alone (no gRPC, no streams): how many
// one-to-one sends per second PostgreSQL commits through the lanes. Prints one JSON line.
//   node --conditions=switchboard-source --import tsx bench/pipeline.ts [--sends 20000 --concurrency 2000 --lanes 4]
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { createMemoryFanout } from "@switchboard/fanout";
import { App, EnvelopeType } from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import pg from "pg";
import pino from "pino";
import { createMemoryRateLimiter } from "@switchboard/ratelimit";
import { ratePolicies } from "../src/delivery/rate-limits.js";
import { createSendPipeline } from "../src/delivery/send-pipeline.js";
import { createMetrics } from "../src/metrics.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    sends: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "2000" },
    lanes: { type: "string", default: "4" },
    accounts: { type: "string", default: "1000" },
  },
});
const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const dbName = `sb_pbench_${Date.now()}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const url = new URL(adminUrl);
url.pathname = `/${dbName}`;
const db = createDatabase({ url: url.toString(), poolSize: 12 });
await migrateToLatest(db);
const accounts: string[] = [];
for (let i = 0; i < Number(args.accounts); i++) {
  const id = randomUUID();
  await insertAccount(db, {
    id,
    app: App.WHATSAPP,
    providerId: "",
    handle: `+1666${String(i).padStart(7, "0")}`,
    registrationId: 1,
    deviceName: "",
    passwordHash: "x",
  });
  accounts.push(id);
}
const metrics = createMetrics({ instance: "pbench", collectDefaults: false });
const pipeline = createSendPipeline({
  db,
  fanout: createMemoryFanout(),
  log: pino({ level: "warn" }),
  metrics,
  lanes: Number(args.lanes),
  batchMax: 500,
  queueTtlMs: 3_600_000,
  maxQueueLength: 1_000_000,
  limiter: createMemoryRateLimiter(),
  policies: ratePolicies({ RATE_SEND_PER_SECOND: 1e6, RATE_PAIR_PER_SECOND: 1e6 }),
});
const total = Number(args.sends);
let started = 0;
let done = 0;
const content = Buffer.alloc(256, 1);
const t0 = performance.now();
await new Promise<void>((resolve) => {
  const next = () => {
    if (started >= total) return;
    const i = started++;
    const from = accounts[i % accounts.length] as string;
    const to = accounts[(i + 1) % accounts.length] as string;
    void pipeline
      .submit({
        kind: "direct",
        sender: { accountId: from, deviceId: 1, app: App.WHATSAPP, providerId: "" },
        destinationAccountId: to,
        noDeliveryReceipt: false,
        messages: [{ deviceId: 1, registrationId: 1, type: EnvelopeType.CIPHERTEXT, content }],
        clientMessageId: randomUUID(),
        clientTimestampMs: Date.now(),
        urgent: false,
        forwarded: false,
        reportTag: null,
      })
      .then(() => {
        done++;
        if (done === total) resolve();
        else next();
      });
  };
  for (let i = 0; i < Number(args.concurrency); i++) next();
});
const s = (performance.now() - t0) / 1000;
const batches =
  (await metrics.commitBatchSize.get()).values.find((v) => v.metricName?.endsWith("_count"))?.value ?? 0;
console.log(
  JSON.stringify({
    sends: total,
    seconds: +s.toFixed(2),
    sendsPerSecond: Math.round(total / s),
    batches,
    avgBatch: +(total / batches).toFixed(1),
  }),
);
await pipeline.close();
await db.destroy();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
await admin.end();
