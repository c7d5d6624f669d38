// Memory per idle connection of the WhatsApp-style gateway: a delivery instance in this process,
// the gateway as a child process (`src/main.ts`, as in production), and a client child process
// that opens N Chat streams (one TCP connection each by default) and leaves them idle. Prints the
// gateway's resident memory before and after, and the difference per connection.
//
//   pnpm --filter @switchboard/gateway-whatsapp bench [-- --connections 2000 --per-channel 1]
//
// Needs DATABASE_URL (a role that may CREATE DATABASE) and REDIS_URL; defaults to the local ones.
import { randomUUID } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { parseArgs } from "node:util";
import { buildApp as buildDelivery } from "@switchboard/delivery";
import { createRedisFanout } from "@switchboard/fanout";
import { createClient } from "@switchboard/grpc";
import { App, grpcHealthV1, whatsapp } from "@switchboard/proto";
import { createDatabase, insertAccount, migrateToLatest } from "@switchboard/storage";
import pg from "pg";
import pino from "pino";
import { sha256 } from "../src/domain/secrets.js";
import { createWaDatabase, migrateWaDatabase } from "../src/storage/database.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    role: { type: "string", default: "main" },
    connections: { type: "string", default: "2000" },
    /** Chat streams per client TCP connection (1: every device has its own connection, like phones). */
    "per-channel": { type: "string", default: "1" },
    target: { type: "string", default: "" },
    "settle-seconds": { type: "string", default: "5" },
    /** Write the gateway's log (at this level) to bench-gateway.log. */
    "gateway-log": { type: "string", default: "" },
  },
});

if (args.role === "client") await runClient();
else await runMain();

/** The client process: reads tokens from stdin, opens one Chat stream each, reports when all drained. */
async function runClient(): Promise<void> {
  const tokens = readFileSync(0, "utf8").split("\n").filter(Boolean);
  const perChannel = Number(args["per-channel"]);
  let drained = 0;
  let failed = 0;
  let reported = false;
  const report = () => {
    if (reported || drained + failed < tokens.length) return;
    reported = true;
    process.stdout.write(`ready ${failed}\n`);
  };
  const channels: ReturnType<typeof createClient<typeof whatsapp.WhatsAppService>>[] = [];
  for (let i = 0; i < tokens.length; i++) {
    if (i % perChannel === 0) channels.push(createClient(whatsapp.WhatsAppService, args.target));
    const client = channels[channels.length - 1] as (typeof channels)[number];
    const stream = client.chat({ metadata: { authorization: `Bearer ${tokens[i]}` } });
    void (async () => {
      try {
        for await (const f of stream.responses) {
          if (f.frame.case === "queueDrained") {
            drained++;
            report();
          }
        }
      } catch (err) {
        failed++;
        process.stderr.write(`stream ${i} failed: ${String(err)}\n`);
        report();
      }
    })();
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise(() => {});
}

/** A port the OS just handed out (so concurrent benches do not collide on a guessed one). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === "object" && address ? address.port : 0;
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
  const N = Number(args.connections);
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
    config: {
      APP_TOKENS: [{ app: App.WHATSAPP, providerId: "", token: TOKEN }],
      MAX_CIPHERTEXT_BYTES: 256 * 1024,
      QUEUE_TTL_SECONDS: 3600,
      MAX_QUEUE_LENGTH: 10_000,
      SEND_BATCH_MAX: 500,
      SEND_LANES: 4,
      ACK_BATCH_MAX: 2000,
      STREAM_POLL_MS: 60_000,
      MAX_DEVICES: 6,
      MAX_GROUP_MEMBERS: 1000,
      INSTANCE_ID: "bench",
    },
    db,
    fanout,
    log,
    collectDefaultMetrics: false,
  });
  const { port: deliveryPort } = await delivery.listen({ host: "127.0.0.1", port: 0 });

  // Devices and their tokens, inserted directly: registration is not what is measured.
  const tokens: string[] = [];
  for (let i = 0; i < N; i++) {
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
    tokens.push(token);
  }

  const gatewayPort = await freePort();
  const gateway: ChildProcess = spawn(
    process.execPath,
    ["--conditions=switchboard-source", "--import", "tsx", "src/main.ts"],
    {
      stdio: ["ignore", args["gateway-log"] ? openSync("bench-gateway.log", "w") : "ignore", "inherit"],
      env: {
        ...process.env,
        DATABASE_URL: url.toString(),
        DELIVERY_TARGET: `127.0.0.1:${deliveryPort}`,
        DELIVERY_APP_TOKEN: TOKEN,
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(gatewayPort),
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
  const before = await sampleRss(pid, settle);

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
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  client.stdin?.end(tokens.join("\n"));
  gateway.once("exit", (code) => {
    if (code !== null && code !== 0) console.error(`gateway exited with ${code}`);
  });
  const started = Date.now();
  const failedStreams = await new Promise<number>((resolve, reject) => {
    client.stdout?.on("data", (d: Buffer) => {
      const m = /ready (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    client.once("exit", (code) => reject(new Error(`client exited with ${code}`)));
  });
  const connectMs = Date.now() - started;
  const after = await sampleRss(pid, settle);

  const perConnKiB = (after - before) / (N - failedStreams);
  console.log(
    JSON.stringify(
      {
        connections: N - failedStreams,
        failedStreams,
        streamsPerTcpConnection: Number(args["per-channel"]),
        allDrainedInMs: connectMs,
        gatewayRssBeforeMiB: +(before / 1024).toFixed(1),
        gatewayRssAfterMiB: +(after / 1024).toFixed(1),
        perConnectionKiB: +perConnKiB.toFixed(1),
      },
      null,
      2,
    ),
  );

  client.kill("SIGTERM");
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
