// Memory per idle connection of the WhatsApp-style gateway: a delivery instance in this process,
// the gateway as a child process (`src/main.ts`, as in production), and client child processes
// that open N Chat streams (one TCP connection each by default, like phones) and leave them idle.
// Prints the gateway's resident memory and V8 heap before and after, and the growth per connection.
//
//   pnpm --filter @switchboard/gateway-whatsapp bench [-- --connections 20000 --clients 4 --per-channel 1]
//
// 20,000 connections need more file descriptors than the usual 1,024 (or 20,000) per process: the
// bench re-executes itself under `ulimit -n` = connections + 1,024 when the soft limit is lower
// (raising the hard limit needs root or CAP_SYS_RESOURCE; otherwise stay below `ulimit -Hn`), so
// the gateway and the clients inherit it. Loopback has ~28k ephemeral ports per destination
// (net.ipv4.ip_local_port_range), enough for 20,000 connections.
//
// Needs DATABASE_URL (a role that may CREATE DATABASE) and REDIS_URL; defaults to the local ones.
import { randomUUID } from "node:crypto";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { buildApp as buildDelivery } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createRedisFanout } from "@switchboard/fanout";
import { createClient } from "@switchboard/grpc";
import { App, grpcHealthV1, whatsapp } from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import { freePort } from "@switchboard/testkit/service-process";
import pg from "pg";
import pino from "pino";
import { sha256 } from "../src/domain/secrets.js";
import { createWaDatabase, migrateWaDatabase } from "../src/storage/database.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    role: { type: "string", default: "main" },
    connections: { type: "string", default: "2000" },
    /** Client processes the connections are spread over (default: one per 5,000). */
    clients: { type: "string", default: "" },
    /** Chat streams per client TCP connection (1: every device has its own connection, like phones). */
    "per-channel": { type: "string", default: "1" },
    /** Streams being opened at once per client process (each one authenticates with a query). */
    "open-concurrency": { type: "string", default: "100" },
    /** Write heap snapshots of the gateway (Heap.<...>.heapsnapshot in its directory) before and after. */
    "heap-snapshot": { type: "boolean", default: false },
    target: { type: "string", default: "" },
    "settle-seconds": { type: "string", default: "5" },
    /** Write the gateway's log (at this level) to bench-gateway.log. */
    "gateway-log": { type: "string", default: "" },
  },
});

if (args.role === "client") await runClient();
else if (!raisedFdLimit()) await runMain();

/**
 * Re-executes this bench under a soft `ulimit -n` large enough for the connections (children
 * inherit it) when the current one is lower. Returns true when it did (and this process is done).
 */
function raisedFdLimit(): boolean {
  const needed = Number(args.connections) + 1024;
  const current = Number(spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim());
  if (!Number.isFinite(current) || current >= needed || process.env.BENCH_FD_LIMIT_RAISED) return false;
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
    console.error(
      `could not raise ulimit -n to ${needed} (hard limit ${spawnSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout.trim()}); run as root or with fewer --connections`,
    );
  process.exit(r.status ?? 1);
}

/**
 * The client process: reads tokens from stdin and opens one Chat stream each, at most
 * `--open-concurrency` at a time; a stream that fails before its queue drained is retried (as
 * phones reconnect). Prints `ready <failed>` once every stream drained or gave up.
 */
async function runClient(): Promise<void> {
  const tokens = readFileSync(0, "utf8").split("\n").filter(Boolean);
  const perChannel = Number(args["per-channel"]);
  const concurrency = Number(args["open-concurrency"]);
  let failed = 0;
  const channels: ReturnType<typeof createClient<typeof whatsapp.WhatsAppService>>[] = [];
  // Every channel gets its own subchannel (TCP connection); grpc-js would otherwise share one.
  const channelOptions = { "grpc.use_local_subchannel_pool": 1 };
  const channelOf = (i: number) => {
    const c = Math.floor(i / perChannel);
    channels[c] ??= createClient(whatsapp.WhatsAppService, args.target, { channelOptions });
    return channels[c];
  };
  /** Opens stream i; resolves once its queue drained (the stream then stays open, idle). */
  const open = async (i: number): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const drained = await new Promise<boolean>((resolve) => {
        const stream = channelOf(i).chat({ metadata: { authorization: `Bearer ${tokens[i]}` } });
        let done = false;
        // A stream that never drains (an overloaded gateway or delivery service) is cancelled and
        // opened again, as a phone would.
        const timer = setTimeout(() => {
          if (done) return;
          done = true;
          stream.cancel();
          resolve(false);
        }, 60_000);
        void (async () => {
          try {
            for await (const f of stream.responses) {
              if (f.frame.case === "queueDrained" && !done) {
                done = true;
                clearTimeout(timer);
                resolve(true);
              }
            }
            if (!done) resolve(false);
            done = true;
            clearTimeout(timer);
          } catch (err) {
            clearTimeout(timer);
            if (!done) {
              done = true;
              if (attempt >= 9) process.stderr.write(`stream ${i} failed: ${String(err)}\n`);
              resolve(false);
            }
          }
        })();
      });
      if (drained) return;
      if (attempt >= 9) {
        failed++;
        return;
      }
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, tokens.length) }, async () => {
      while (next < tokens.length) await open(next++);
    }),
  );
  process.stdout.write(`ready ${failed}\n`);
  await new Promise(() => {});
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

async function sampleRss(pid: number, seconds: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < seconds * 2; i++) {
    samples.push(rssKiB(pid));
    await new Promise((r) => setTimeout(r, 500));
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] ?? 0;
}

async function runMain(): Promise<void> {
  let N = Number(args.connections);
  const limit = Number(spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim());
  const gatewaySockets = Math.ceil(N / Number(args["per-channel"]));
  if (gatewaySockets + 256 > limit) {
    // Without CAP_SYS_RESOURCE the hard limit caps the sockets one process may hold.
    N = (limit - 256) * Number(args["per-channel"]);
    console.error(`ulimit -n is ${limit} here (the hard limit): opening ${N} streams instead`);
  }
  const settle = Number(args["settle-seconds"]);
  const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const TOKEN = "bench-wa-token-0123456789abcdef";
  const dbName = `sb_bench_wa_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const db = createDatabase({ url: url.toString(), poolSize: 8 });
  await migrateToLatest(db);
  const waDb = createWaDatabase({ url: url.toString() });
  await migrateWaDatabase(waDb);

  const log = pino({ level: "warn" });
  const fanout = await createRedisFanout({ url: redisUrl, keyPrefix: `benchwa${Date.now()}:` });
  const delivery = buildDelivery({
    config: testDeliveryConfig({ whatsapp: TOKEN }, { STREAM_POLL_MS: 60_000, INSTANCE_ID: "bench" }),
    db,
    fanout,
    log,
    collectDefaultMetrics: false,
  });
  const { port: deliveryPort } = await delivery.listen({ host: "127.0.0.1", port: 0 });

  // Devices and their tokens, inserted directly (16 at a time): registration is not measured.
  const tokens: string[] = new Array<string>(N);
  let nextDevice = 0;
  const insertDevice = async (i: number) => {
    const id = randomUUID();
    const phone = `+1666${String(i).padStart(7, "0")}`;
    await insertAccount(db, {
      id,
      app: App.WHATSAPP,
      providerId: "",
      handle: phone,
      registrationId: 1 + (i % 16000),
      deviceName: "",
      passwordHash: "unused-by-the-gateway",
    });
    const token = randomUUID();
    await waDb
      .insertInto("wa_device_tokens")
      .values({ token_hash: sha256(token), account_id: id, device_id: 1, phone })
      .execute();
    tokens[i] = token;
  };
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (nextDevice < N) await insertDevice(nextDevice++);
    }),
  );

  const gatewayPort = await freePort();
  const metricsPort = await freePort();
  const gateway: ChildProcess = spawn(
    process.execPath,
    [
      "--conditions=switchboard-source",
      ...(args["heap-snapshot"] ? ["--heapsnapshot-signal=SIGUSR2"] : []),
      "--import",
      "tsx",
      "src/main.ts",
    ],
    {
      stdio: ["ignore", args["gateway-log"] ? openSync("bench-gateway.log", "w") : "ignore", "inherit"],
      env: {
        ...process.env,
        DATABASE_URL: url.toString(),
        DELIVERY_TARGET: `127.0.0.1:${deliveryPort}`,
        DELIVERY_APP_TOKEN: TOKEN,
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(gatewayPort),
        METRICS_PORT: String(metricsPort),
        MIGRATE_ON_START: "false",
        LOG_LEVEL: args["gateway-log"] || "warn",
      },
    },
  );
  const target = `127.0.0.1:${gatewayPort}`;
  const health = createClient(grpcHealthV1.Health, target, { defaultDeadlineMs: 1000 });
  for (let i = 0; ; i++) {
    const ok = await health.check({ service: "" }).then(
      () => true,
      () => false,
    );
    if (ok) break;
    if (i > 100) throw new Error("gateway did not start");
    await new Promise((r) => setTimeout(r, 200));
  }
  health.close();
  const pid = gateway.pid ?? 0;
  const heapUsed = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? 0);
  };
  const before = await sampleRss(pid, settle);
  const heapBefore = await heapUsed();
  if (args["heap-snapshot"]) {
    gateway.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, 10_000));
  }

  const clientCount = Math.max(1, Number(args.clients || Math.ceil(N / 5000)));
  const clients: ChildProcess[] = [];
  gateway.once("exit", (code) => {
    if (code !== null && code !== 0) console.error(`gateway exited with ${code}`);
  });
  const started = Date.now();
  const failures = await Promise.all(
    Array.from({ length: clientCount }, (_, c) => {
      const share = tokens.slice(Math.floor((c * N) / clientCount), Math.floor(((c + 1) * N) / clientCount));
      const client = spawn(
        process.execPath,
        [
          "--conditions=switchboard-source",
          "--import",
          "tsx",
          "bench/idle-connections.ts",
          "--role",
          "client",
          "--target",
          target,
          "--per-channel",
          args["per-channel"],
          "--open-concurrency",
          args["open-concurrency"],
        ],
        { stdio: ["pipe", "pipe", "inherit"] },
      );
      clients.push(client);
      client.stdin?.end(share.join("\n"));
      return new Promise<number>((resolve, reject) => {
        client.stdout?.on("data", (d: Buffer) => {
          const m = /ready (\d+)/.exec(d.toString());
          if (m) resolve(Number(m[1]));
        });
        client.once("exit", (code) => reject(new Error(`client exited with ${code}`)));
      });
    }),
  );
  const failedStreams = failures.reduce((a, b) => a + b, 0);
  const connectMs = Date.now() - started;
  const after = await sampleRss(pid, settle);
  const heapAfter = await heapUsed();
  if (args["heap-snapshot"]) {
    gateway.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, 20_000));
  }

  const open = N - failedStreams;
  const perConnKiB = (after - before) / open;
  console.log(
    JSON.stringify(
      {
        connections: open,
        failedStreams,
        streamsPerTcpConnection: Number(args["per-channel"]),
        clientProcesses: clientCount,
        allDrainedInMs: connectMs,
        gatewayRssBeforeMiB: +(before / 1024).toFixed(1),
        gatewayRssAfterMiB: +(after / 1024).toFixed(1),
        perConnectionKiB: +perConnKiB.toFixed(1),
        heapPerConnectionKiB: +((heapAfter - heapBefore) / 1024 / open).toFixed(1),
      },
      null,
      2,
    ),
  );

  for (const client of clients) client.kill("SIGTERM");
  gateway.kill("SIGTERM");
  await new Promise((r) => gateway.once("exit", r));
  await delivery.close(500);
  await fanout.close();
  await waDb.destroy();
  await db.destroy();
  await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
  await admin.end();
  process.exit(0);
}
