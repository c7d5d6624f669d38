// Memory per idle WebSocket connection of the Messenger-style gateway.
//
//   pnpm --filter @switchboard/gateway-messenger bench [-- --connections 20000 --batch 100]
//
// Above the soft `ulimit -n` the bench re-executes itself under a raised limit (root, or below
// `ulimit -Hn`); the gateway child inherits it.
//
// Starts a delivery instance in this process (in-memory fan-out), runs the gateway as a child
// process (as in production), opens N authenticated WebSockets (one device each), waits until every
// one has drained its (empty) queue and gone idle, and reports the gateway's RSS and heap growth
// divided by N. Devices and tokens are inserted directly: registration is not measured.
//
// Needs DATABASE_URL (a role that may CREATE DATABASE); defaults to the local one.
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildApp as buildDelivery } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createMemoryFanout } from "@switchboard/fanout";
import { App } from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import { freePort } from "@switchboard/testkit/service-process";
import pg from "pg";
import pino from "pino";
import WebSocket from "ws";
import { digestToken, generateToken } from "../src/domain/tokens.js";
import { createGatewayDatabase, migrateGatewayDatabase } from "../src/storage/database.js";
import { insertToken } from "../src/storage/token-repository.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    connections: { type: "string", default: "2000" },
    batch: { type: "string", default: "100" },
    "settle-ms": { type: "string", default: "3000" },
  },
});
let N = Number(args.connections);
const BATCH = Number(args.batch);
const SETTLE_MS = Number(args["settle-ms"]);
const TOKEN = "bench-ms-token-0123456789abcdef";
reexecWithFdLimit(N + 1024);
if (N + 256 > fdLimit()) {
  // Without CAP_SYS_RESOURCE the hard limit caps the sockets one process may hold.
  console.error(
    `ulimit -n is ${fdLimit()} here (the hard limit): opening ${fdLimit() - 256} connections instead of ${N}`,
  );
  N = fdLimit() - 256;
}

const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const dbName = `sb_bench_ms_${Date.now()}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const url = new URL(adminUrl);
url.pathname = `/${dbName}`;
const db = createDatabase({ url: url.toString(), poolSize: 8 });
await migrateToLatest(db);
const gwDb = createGatewayDatabase({ url: url.toString(), poolSize: 4 });
await migrateGatewayDatabase(gwDb);

const fanout = createMemoryFanout();
const delivery = buildDelivery({
  config: testDeliveryConfig({ messenger: TOKEN }, { STREAM_POLL_MS: 60_000, INSTANCE_ID: "bench" }),
  db,
  fanout,
  log: pino({ level: "warn" }),
  collectDefaultMetrics: false,
});
const { port: deliveryPort } = await delivery.listen({ host: "127.0.0.1", port: 0 });

console.log(`inserting ${N} devices and tokens...`);
const tokens: string[] = new Array<string>(N);
await forEachConcurrently(N, 16, async (i) => {
  const id = randomUUID();
  const userId = String(100_000 + i);
  await insertAccount(db, {
    id,
    app: App.MESSENGER,
    providerId: "",
    handle: userId,
    registrationId: 1 + (i % 16000),
    deviceName: "",
    passwordHash: "unused-by-the-gateway",
  });
  const token = generateToken();
  await insertToken(gwDb, { digest: digestToken(token), accountId: id, deviceId: 1, userId });
  tokens[i] = token;
});

// A port the OS just handed out: a guessed one can collide with a socket still closing from an
// earlier run (EADDRINUSE).
const httpPort = await freePort();
const base = `http://127.0.0.1:${httpPort}`;
const child = spawn(
  process.execPath,
  [
    "--conditions=switchboard-source",
    "--import",
    "tsx",
    fileURLToPath(new URL("../src/main.ts", import.meta.url)),
  ],
  {
    stdio: ["ignore", "ignore", "inherit"],
    env: {
      ...process.env,
      DATABASE_URL: url.toString(),
      DELIVERY_TARGET: `127.0.0.1:${deliveryPort}`,
      DELIVERY_APP_TOKEN: TOKEN,
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: "warn",
      MIGRATE_ON_START: "false",
    },
  },
);

interface Health {
  connections: number;
  linkDevices: number;
  memory: { rssBytes: number; heapUsedBytes: number };
}
const health = async (): Promise<Health> => (await (await fetch(`${base}/healthz`)).json()) as Health;
for (let i = 0; ; i++) {
  const ok = await fetch(`${base}/healthz`).then(
    (r) => r.ok,
    () => false,
  );
  if (ok) break;
  if (i > 300) throw new Error("gateway child did not start");
  await new Promise((r) => setTimeout(r, 100));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
await sleep(SETTLE_MS);
const before = await health();

const sockets: WebSocket[] = [];
const started = Date.now();
for (let i = 0; i < N; i += BATCH) {
  await Promise.all(
    tokens.slice(i, i + BATCH).map(
      (token) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`${base.replace("http", "ws")}/v1/stream`, {
            headers: { authorization: `Bearer ${token}` },
            perMessageDeflate: false,
          });
          ws.on("message", (data: Buffer) => {
            if ((JSON.parse(data.toString()) as { type?: string }).type === "queue_empty") resolve();
          });
          ws.on("error", reject);
          sockets.push(ws);
        }),
    ),
  );
}
const connectMs = Date.now() - started;
await sleep(SETTLE_MS);
const after = await health();

const perConnection = (a: number, b: number) => ((b - a) / N / 1024).toFixed(1);
console.log(
  JSON.stringify(
    {
      connections: after.connections,
      linkDevices: after.linkDevices,
      connectMs,
      rssBeforeMiB: +(before.memory.rssBytes / 2 ** 20).toFixed(1),
      rssAfterMiB: +(after.memory.rssBytes / 2 ** 20).toFixed(1),
      rssPerConnectionKiB: +perConnection(before.memory.rssBytes, after.memory.rssBytes),
      heapPerConnectionKiB: +perConnection(before.memory.heapUsedBytes, after.memory.heapUsedBytes),
    },
    null,
    2,
  ),
);

for (const ws of sockets) ws.terminate();
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
await delivery.close(500);
await fanout.close();
await gwDb.destroy();
await db.destroy();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
await admin.end();

/**
 * Re-executes this bench under a soft `ulimit -n` of `needed` (children inherit it) when the
 * current one is lower: 20,000 sockets need more descriptors than the usual default. Raising the
 * hard limit needs root (or CAP_SYS_RESOURCE); otherwise stay below `ulimit -Hn`.
 */
function reexecWithFdLimit(needed: number): void {
  const current = Number(spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim());
  if (!Number.isFinite(current) || current >= needed || process.env.BENCH_FD_LIMIT_RAISED) return;
  const r = spawnSync(
    "sh",
    [
      "-c",
      `ulimit -Hn ${needed} 2>/dev/null; ulimit -n ${needed} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`,
      process.execPath,
      ...process.execArgv,
      ...process.argv.slice(1),
    ],
    { stdio: "inherit", env: { ...process.env, BENCH_FD_LIMIT_RAISED: "1" } },
  );
  if (r.status !== 0)
    console.error(`could not raise ulimit -n to ${needed}: run as root or with fewer connections`);
  process.exit(r.status ?? 1);
}

/** Runs `task(i)` for every i < n, `concurrency` at a time. */
async function forEachConcurrently(n: number, concurrency: number, task: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

/** The soft `ulimit -n` of this process (after {@link reexecWithFdLimit}). */
function fdLimit(): number {
  return Number(spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim());
}
