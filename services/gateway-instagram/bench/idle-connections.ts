// Memory per idle event-stream connection of the Instagram-style gateway.
//
//   pnpm --filter @switchboard/gateway-instagram bench [-- --connections 20000]
//
// Above the soft `ulimit -n` the bench re-executes itself under a raised limit (root, or below
// `ulimit -Hn`); the client child inherits it.
//
// Starts a delivery service (child process) and this gateway (in this process) over a fresh
// database, opens `connections` SSE streams from another child process (one device each, all idle
// after queue_empty), and reports this process's heap and RSS growth per connection. Each
// connection also holds one device subscription on the shared delivery link (and one at the
// delivery service, not counted here). Needs DATABASE_URL (a role that may CREATE DATABASE) and
// REDIS_URL; defaults to the local ones.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { createDeliveryLink } from "@switchboard/delivery-link";
import { App } from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import type { Kysely } from "kysely";
import pg from "pg";
import pino from "pino";
import { buildApp } from "../src/app.js";
import { generateAccessToken, tokenDigest } from "../src/domain/tokens.js";
import { migrateGateway } from "../src/storage/migrate.js";
import type { IgDatabase } from "../src/storage/schema.js";
import { freePort } from "@switchboard/testkit/service-process";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: { connections: { type: "string", default: "2000" }, streams: { type: "string", default: "2" } },
});
let N = Number(args.connections);
reexecWithFdLimit(N + 1024);
if (N + 256 > fdLimit()) {
  // Without CAP_SYS_RESOURCE the hard limit caps the sockets one process may hold.
  console.error(
    `ulimit -n is ${fdLimit()} here (the hard limit): opening ${fdLimit() - 256} connections instead of ${N}`,
  );
  N = fdLimit() - 256;
}
const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const TOKEN = "bench-ig-token-0123456789abcdef";
const dbName = `sb_bench_ig_${Date.now()}`;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const url = new URL(adminUrl);
url.pathname = `/${dbName}`;
const db = createDatabase({ url: url.toString(), poolSize: 8 });
await migrateToLatest(db);
const igDb = db as unknown as Kysely<IgDatabase>;
await migrateGateway(igDb);

const children: ChildProcess[] = [];
async function cleanup() {
  for (const c of children) c.kill("SIGTERM");
  await db.destroy();
  await sleep(500);
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
}

try {
  const grpcPort = await freePort();
  const delivery = spawn(
    process.execPath,
    ["--conditions=switchboard-source", "--import", "tsx", "src/main.ts"],
    {
      cwd: new URL("../../delivery/", import.meta.url),
      stdio: ["ignore", "ignore", "inherit"],
      env: {
        ...process.env,
        DATABASE_URL: url.toString(),
        REDIS_URL: redisUrl,
        APP_TOKENS: `instagram=${TOKEN}`,
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(grpcPort),
        METRICS_PORT: String(grpcPort + 1),
        LOG_LEVEL: "warn",
      },
    },
  );
  children.push(delivery);
  for (let i = 0; ; i++) {
    if (
      await fetch(`http://127.0.0.1:${grpcPort + 1}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 900) throw new Error("delivery did not start");
    await sleep(100);
  }

  // Accounts and tokens are inserted directly: registration is not what is measured. The gateway
  // acts with its app credential, so the device secret's hash is never checked.
  const tokens: string[] = new Array<string>(N);
  await forEachConcurrently(N, 16, async (i) => {
    const id = randomUUID();
    await insertAccount(db, {
      id,
      app: App.INSTAGRAM,
      providerId: "",
      handle: `bench_${i}`,
      registrationId: 1 + (i % 16000),
      deviceName: "",
      passwordHash: "unused",
    });
    const token = generateAccessToken();
    await igDb
      .insertInto("ig_tokens")
      .values({ token_hash: tokenDigest(token), account_id: id, device_id: 1 })
      .execute();
    tokens[i] = token;
  });

  const log = pino({ level: "warn" });
  const link = createDeliveryLink({
    target: `127.0.0.1:${grpcPort}`,
    appToken: TOKEN,
    streams: Number(args.streams),
    log,
  });
  const app = buildApp({ config: { MAX_BODY_BYTES: 4 << 20 }, db: igDb, link, log });
  const port = await app.listen({ host: "127.0.0.1", port: 0 });
  const measure = () => {
    gc();
    gc();
    return process.memoryUsage();
  };

  const clients = spawn(process.execPath, ["--import", "tsx", "bench/sse-clients.ts"], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, GATEWAY_URL: `http://127.0.0.1:${port}` },
  });
  children.push(clients);
  // A few connections first warm up code paths, so that JIT and caches are not counted.
  const warm = 50;
  const warmClients = spawn(process.execPath, ["--import", "tsx", "bench/sse-clients.ts"], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, GATEWAY_URL: `http://127.0.0.1:${port}` },
  });
  children.push(warmClients);
  const readyOf = (c: ChildProcess) =>
    new Promise<void>((resolve, reject) => {
      c.stdout?.on("data", (d: Buffer) => {
        if (d.toString().startsWith("ready")) resolve();
      });
      c.on("exit", (code) => reject(new Error(`client process exited (${code})`)));
    });
  const warmReady = readyOf(warmClients);
  warmClients.stdin?.end(tokens.slice(0, warm).join("\n"));
  await warmReady;
  await sleep(2000);
  const before = measure();
  const started = Date.now();
  const ready = readyOf(clients);
  clients.stdin?.end(tokens.slice(warm).join("\n"));
  await ready;
  const openMs = Date.now() - started;
  await sleep(3000);
  const after = measure();
  const n = N - warm;
  const per = (k: "heapUsed" | "rss" | "external") => ((after[k] - before[k]) / n / 1024).toFixed(1);
  console.log(
    JSON.stringify(
      {
        connections: n,
        open_seconds: +(openMs / 1000).toFixed(1),
        live_connections: app.hub.connections,
        subscribed_devices: link.subscribedDevices,
        heap_kib_per_connection: +per("heapUsed"),
        external_kib_per_connection: +per("external"),
        rss_kib_per_connection: +per("rss"),
        heap_mib_total: +(after.heapUsed / 1048576).toFixed(1),
        rss_mib_total: +(after.rss / 1048576).toFixed(1),
      },
      null,
      2,
    ),
  );
  await app.close();
  await link.close();
} finally {
  await cleanup();
}
process.exit(0);

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
