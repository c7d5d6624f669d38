// `pnpm bench:targets`: every performance target of the project (docs/benchmarks.md, issue 7)
// measured on this machine, in one command. It creates a fresh database, starts the delivery service and the three gateways as
// separate processes (as `pnpm start` runs them, with the rate limits raised for load), runs the
// load generator for each throughput and latency target, then the gateways' idle-connection
// benches, and prints a table of figure, goal and verdict. The reports go to --out (one directory
// per run, plus summary.json and summary.md). Exit status: 0 when every run verified (nothing
// lost, duplicated or reordered, no error) and produced its figure, 1 otherwise, 2 for a bad
// command line. Missed targets do not fail it: they depend on the machine. See docs/benchmarks.md.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createDatabase } from "@switchboard/storage";
import type { ServiceProcess } from "@switchboard/testkit/service-process";
import { appTokensSetting, startSystem } from "@switchboard/testkit/system";
import { Redis } from "ioredis";
import { sql } from "kysely";
import {
  idleMeasurementOf,
  judge,
  measurementOf,
  medianOf,
  renderVerdicts,
  renderVerdictsMarkdown,
  TARGET_IDS,
  type LoadReport,
  type Measurement,
  type TargetId,
} from "../src/index.js";

const USAGE = `Usage: pnpm bench:targets [options]

Measures the project's performance targets (docs/benchmarks.md) on this machine (PostgreSQL and Redis from DATABASE_URL and
REDIS_URL; default postgres://postgres@127.0.0.1:5432/test and redis://127.0.0.1:6379) and prints
figure, goal and verdict for each. Takes about ten minutes with the defaults.

  --only LIST            targets to run, comma-separated (default all): ${TARGET_IDS.join(", ")}
  --seconds S            measured seconds per load run (default 20)
  --warmup S             warm-up seconds per load run (default 3)
  --devices N            devices of the delivery API runs (default 1000)
  --gateway-devices N    devices of each full-path run, all of one app (default 600)
  --idle-connections N   idle devices per gateway (default 20000)
  --half-rate N          latency-half without streaming in --only: the offered rate to use
  --repeat N             run each load target N times and judge the median (default 1)
  --quick                a short correctness run (60/30 devices, 2 s, 300 idle connections)
  --out DIR              where the reports go (default reports/targets-<time>)
  -h, --help             this text
`;

function usageError(message: string): never {
  process.stderr.write(`error: ${message}\n\n${USAGE}`);
  process.exit(2);
}

const parse = () =>
  parseArgs({
    args: process.argv.slice(2).filter((a) => a !== "--"),
    options: {
      only: { type: "string" },
      seconds: { type: "string" },
      warmup: { type: "string" },
      devices: { type: "string" },
      "gateway-devices": { type: "string" },
      "idle-connections": { type: "string" },
      "half-rate": { type: "string" },
      repeat: { type: "string" },
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
let args: ReturnType<typeof parse>["values"];
try {
  args = parse().values;
} catch (err) {
  usageError(err instanceof Error ? err.message : String(err));
}
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

function count(flag: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) usageError(`--${flag}: expected a positive integer, got "${raw}"`);
  return n;
}

const quick = args.quick;
const selected = new Set<TargetId>();
for (const id of (args.only ?? TARGET_IDS.join(",")).split(",").map((s) => s.trim())) {
  if (!(TARGET_IDS as readonly string[]).includes(id))
    usageError(`--only: unknown target "${id}" (expected ${TARGET_IDS.join(", ")})`);
  selected.add(id as TargetId);
}
const SECONDS = count("seconds", args.seconds, quick ? 2 : 20);
const WARMUP = count("warmup", args.warmup, quick ? 1 : 3);
const DEVICES = count("devices", args.devices, quick ? 60 : 1000);
const GATEWAY_DEVICES = count("gateway-devices", args["gateway-devices"], quick ? 30 : 600);
const IDLE = count("idle-connections", args["idle-connections"], quick ? 300 : 20_000);
const REPEAT = count("repeat", args.repeat, 1);
const HALF_RATE = args["half-rate"] === undefined ? undefined : count("half-rate", args["half-rate"], 1);
if (selected.has("latency-half") && !selected.has("streaming") && HALF_RATE === undefined)
  usageError("latency-half needs streaming in --only (its maximum sets the rate) or --half-rate");

const here = fileURLToPath(new URL(".", import.meta.url));
const serviceDir = (name: string) => resolve(here, "../..", name);
const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const outDir = resolve(process.env.INIT_CWD ?? process.cwd(), args.out ?? `reports/targets-${stamp}`);
const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const dbName = `sb_targets_${Date.now()}`;
const dbUrl = new URL(adminUrl);
dbUrl.pathname = `/${dbName}`;
const redisPrefix = `targets${Date.now()}:`;
// Fresh app credentials per run (the services listen on loopback only, for the run's length).
const tokens = {
  whatsapp: randomBytes(24).toString("base64url"),
  messenger: randomBytes(24).toString("base64url"),
  instagram: randomBytes(24).toString("base64url"),
};
const appTokens = appTokensSetting(tokens);
// The benchmark drives a few accounts far harder than any person does: the per-device and
// per-pair send limits, and the registration limits of setup, are raised for it (as in
// docs/benchmarks.md); every other setting is the default.
const RAISED_LIMITS = {
  RATE_SEND_PER_SECOND: "1000000",
  RATE_PAIR_PER_SECOND: "1000000",
  RATE_PREKEYS_PER_MINUTE: "1000000",
  RATE_REGISTER_PER_HOUR: "1000000",
  RATE_NEW_CONVERSATIONS_PER_HOUR: "1000000",
  RATE_FORWARDED_CHATS_BURST: "1000000",
  RATE_FORWARDED_CHATS_PER_HOUR: "1000000",
};
const SOURCE = ["--conditions=switchboard-source", "--import", "tsx", "src/main.ts"];
// `pnpm start`'s flags: the delivery service with a 64 MiB young generation and GC on its main
// thread; the gateways on V8's defaults (docs/delivery.md "Node heap").
const DELIVERY_FLAGS = ["--max-semi-space-size=64", "--single-threaded-gc"];
// `pnpm loadtest`'s flags.
const LOADGEN_FLAGS = ["--max-semi-space-size=64", "--single-threaded-gc"];

const say = (line: string) => process.stderr.write(`${line}\n`);

const processes: ServiceProcess[] = [];
const measurements: Measurement[] = [];
const admin = createDatabase({ url: adminUrl, poolSize: 1 });
const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
let dbCreated = false;
/** The run's own database, for the VACUUM before each load run. */
const runDb = createDatabase({ url: dbUrl.toString(), poolSize: 1 });

/** The PostgreSQL server's and redis-server's pids, when they run on this machine (for CPU figures). */
async function serverPids(): Promise<string[]> {
  const out: string[] = [];
  const local = (pid: string | undefined) => {
    try {
      return pid !== undefined && readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      return false; // Another machine's server, or no /proc: the reports go without its CPU.
    }
  };
  const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(admin);
  const stat = local(String(rows[0]?.pid));
  // The postmaster is the parent of our backend; the reports add its children (the backends).
  const postmaster = stat ? stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1] : undefined;
  if (postmaster) out.push(`postgres=${postmaster}`);
  const redisPid = /process_id:(\d+)/.exec(await redis.info("server"))?.[1];
  if (local(redisPid)) out.push(`redis=${redisPid}`);
  return out;
}

/** Deletes the Redis keys the services left under this run's prefix (rate-limit buckets). */
async function deleteRedisKeys(): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${redisPrefix}*`, "COUNT", 1000);
    if (keys.length > 0) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
}

async function startServices(withGateways: boolean) {
  const system = await startSystem({
    databaseUrl: dbUrl.toString(),
    redisUrl,
    tokens,
    env: { REDIS_KEY_PREFIX: redisPrefix, LOG_LEVEL: "warn", ...RAISED_LIMITS },
    deliveryEnv: { INSTANCE_ID: "bench-targets" },
    deliveryArgs: [...DELIVERY_FLAGS, ...SOURCE],
    gateways: withGateways,
    started: (p) => processes.push(p),
  });
  const servers = await serverPids();
  const gw = system.gateways;
  const gatewayPids = gw
    ? [`whatsapp=${gw.whatsapp.pid}`, `messenger=${gw.messenger.pid}`, `instagram=${gw.instagram.pid}`]
    : [];
  return {
    target: system.deliveryTarget,
    gateways: gw,
    // The processes whose CPU and memory each report shows: the gateways only on their runs.
    deliveryPids: [`delivery=${system.delivery.pid}`, ...servers].join(","),
    pids: [`delivery=${system.delivery.pid}`, ...gatewayPids, ...servers].join(","),
  };
}

/**
 * One `pnpm loadtest` run, as its own process (so that each report's CPU figures are the load
 * generator's alone, not this command's service children's); its figure for target `id`.
 */
async function loadRun(id: TargetId, argv: string[]): Promise<number | undefined> {
  const shown = argv.map((a, i) => (argv[i - 1] === "--app-tokens" ? "…" : a));
  const runs: Measurement[] = [];
  for (let k = 1; k <= REPEAT && (k === 1 || !interrupted); k++) {
    const dir = REPEAT > 1 ? join(outDir, id, `run-${k}`) : join(outDir, id);
    say(`\n== ${id}${REPEAT > 1 ? ` (run ${k} of ${REPEAT})` : ""}: pnpm loadtest ${shown.join(" ")}`);
    // Each run starts from a vacuumed database, as autovacuum keeps a live one: the runs before
    // left dead queue rows behind, and a server with autovacuum off (as CI machines may be) would
    // otherwise make each run slower than the last (docs/benchmarks.md, eighteenth round).
    await sql.raw("VACUUM ANALYZE").execute(runDb);
    const code = await new Promise<number | null>((done) => {
      const child = spawn(process.execPath, [...LOADGEN_FLAGS, ...SOURCE, ...argv, "--out", dir], {
        cwd: resolve(here, ".."),
        // Its progress and summary go to this command's stderr; stdout keeps the final table.
        stdio: ["ignore", 2, 2],
      });
      child.on("close", done);
    });
    try {
      const report = JSON.parse(await readFile(join(dir, "report.json"), "utf8")) as LoadReport;
      runs.push(measurementOf(id, report, join(dir, "report.json")));
    } catch {
      runs.push({
        id,
        value: null,
        verified: false,
        detail: `the load generator exited with ${code}, no report`,
      });
    }
    say(`${id}: ${runs.at(-1)?.detail}`);
  }
  const m = medianOf(runs);
  if (REPEAT > 1) say(`${id}: ${m.detail}`);
  measurements.push(m);
  // The throughput of the median run (streaming's sets latency-half's rate).
  if (m.report === undefined) return undefined;
  const median = JSON.parse(await readFile(m.report, "utf8")) as LoadReport;
  return median.traffic.sendsPerSecond;
}

/** One gateway's idle-connection bench as a child process (it starts its own services). */
async function idleRun(id: TargetId, gateway: string, extra: string[]): Promise<void> {
  const flags = gateway === "gateway-instagram" ? ["--expose-gc"] : [];
  const argv = [...flags, "--conditions=switchboard-source", "--import", "tsx", "bench/idle-connections.ts"];
  const benchArgs = ["--connections", String(IDLE), ...extra];
  say(`\n== ${id}: pnpm --filter @switchboard/${gateway} bench -- ${benchArgs.join(" ")}`);
  const output = await new Promise<string>((done) => {
    const child = spawn(process.execPath, [...argv, ...benchArgs], {
      cwd: serviceDir(gateway),
      env: { ...process.env, DATABASE_URL: adminUrl, REDIS_URL: redisUrl },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.stderr.on("data", (d: Buffer) => (text += d.toString()));
    child.on("close", () => done(text));
  });
  const m = idleMeasurementOf(id, output);
  say(`${id}: ${m.detail}`);
  measurements.push(m);
}

// Ctrl-C reaches the services and the current run too (one process group): that run ends early and
// reports, the rest are skipped, and the database and Redis keys are still removed. A second quits.
let interrupted = false;
process.on("SIGINT", () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  say("interrupted: skipping the remaining runs, then cleaning up (Ctrl-C again to quit now)");
});
const wanted = (id: TargetId) => selected.has(id) && !interrupted;

let failed = false;
try {
  await mkdir(outDir, { recursive: true });
  await redis.connect();
  const loadTargets = TARGET_IDS.filter((id) => selected.has(id) && !id.startsWith("idle-"));
  if (loadTargets.length > 0) {
    await sql.raw(`CREATE DATABASE "${dbName}"`).execute(admin);
    dbCreated = true;
    const withGateways = loadTargets.some(
      (id) => id === "whatsapp" || id === "messenger" || id === "instagram",
    );
    say(`starting the delivery service${withGateways ? " and the three gateways" : ""} on ${dbName}`);
    const system = await startServices(withGateways);
    const timing = ["--duration", String(SECONDS), "--warmup", String(WARMUP)];
    const delivery = [
      "--target",
      system.target,
      "--app-tokens",
      appTokens,
      "--devices",
      String(DEVICES),
      "--population",
      join(outDir, "population-delivery.json"),
      "--pids",
      system.deliveryPids,
      ...timing,
    ];
    let max: number | undefined;
    if (wanted("streaming"))
      max = await loadRun("streaming", [
        ...delivery,
        "--mode",
        "delivery-stream",
        "--closed-loop",
        "--inflight",
        "2000",
      ]);
    if (wanted("unary"))
      await loadRun("unary", [
        ...delivery,
        "--mode",
        "delivery-unary",
        "--closed-loop",
        "--inflight",
        "1000",
      ]);
    if (wanted("latency-2000"))
      await loadRun("latency-2000", [...delivery, "--mode", "delivery-stream", "--rate", "2000"]);
    if (wanted("latency-half")) {
      const rate = HALF_RATE ?? (max === undefined ? undefined : Math.max(1, Math.round(max / 2)));
      if (rate === undefined)
        measurements.push({
          id: "latency-half",
          value: null,
          verified: false,
          detail: "the streaming run gave no maximum",
        });
      else await loadRun("latency-half", [...delivery, "--mode", "delivery-stream", "--rate", String(rate)]);
    }
    const gateways = system.gateways;
    for (const app of ["whatsapp", "messenger", "instagram"] as const) {
      if (!wanted(app) || !gateways) continue;
      await loadRun(app, [
        "--via",
        "gateways",
        "--whatsapp",
        gateways.whatsappTarget,
        "--whatsapp-admin",
        gateways.whatsappAdmin,
        "--messenger",
        gateways.messengerUrl,
        "--instagram",
        gateways.instagramUrl,
        "--mix",
        `${app}=100`,
        "--devices",
        String(GATEWAY_DEVICES),
        "--population",
        join(outDir, `population-${app}.json`),
        "--pids",
        system.pids,
        "--closed-loop",
        "--inflight",
        String(GATEWAY_DEVICES),
        "--send-timeout",
        "60",
        "--drain-timeout",
        "90",
        ...timing,
      ]);
    }
    // The idle benches start services of their own: stop these first.
    await Promise.all(processes.splice(0).map((p) => p.stop()));
  }
  if (wanted("idle-whatsapp"))
    // 100 devices' streams per HTTP/2 connection, as behind an L7 load balancer that terminates the
    // phones' connections: one Node HTTP/2 session per device costs more than 20 KB by itself
    // (docs/benchmarks.md, "Idle connections"). Four client processes open them.
    await idleRun("idle-whatsapp", "gateway-whatsapp", ["--per-channel", "100", "--clients", "4"]);
  if (wanted("idle-messenger")) await idleRun("idle-messenger", "gateway-messenger", []);
  if (wanted("idle-instagram")) await idleRun("idle-instagram", "gateway-instagram", []);
} catch (err) {
  failed = true;
  say(`bench:targets failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (typeof err === "object" && err !== null && "code" in err && err.code === "ECONNREFUSED")
    say("PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) must be reachable: see --help");
  for (const p of processes) say(`--- ${p.name} output:\n${p.output()}`);
} finally {
  await Promise.all(processes.map((p) => p.stop()));
  await runDb.destroy();
  if (dbCreated) await sql.raw(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).execute(admin);
  await admin.destroy();
  if (redis.status === "ready") await deleteRedisKeys();
  redis.disconnect();
}

// A --quick run is for correctness: its figures come from a smaller configuration than the targets'.
const verdicts = judge(
  TARGET_IDS.flatMap((id) => measurements.filter((m) => m.id === id)),
  { judged: !quick },
);
const summary = {
  startedAt: stamp,
  // What the run created and removed again: its database and its Redis keys' prefix.
  database: dbName,
  redisPrefix,
  options: {
    seconds: SECONDS,
    warmup: WARMUP,
    repeat: REPEAT,
    devices: DEVICES,
    gatewayDevices: GATEWAY_DEVICES,
    idle: IDLE,
  },
  verdicts: verdicts.map((v) => ({
    id: v.id,
    title: v.target.title,
    value: v.value,
    unit: v.target.unit,
    goal: v.target.goal,
    better: v.target.better,
    met: v.judged ? v.met : null,
    verified: v.verified,
    detail: v.detail,
    report: v.report ?? null,
  })),
};
await writeFile(join(outDir, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
await writeFile(join(outDir, "summary.md"), `${renderVerdictsMarkdown(verdicts)}\n`);
process.stdout.write(
  `\n${renderVerdicts(verdicts)}\n${quick ? "\n--quick: a correctness run; its figures are not judged against the targets\n" : ""}\nreports     ${outDir}\n`,
);
const clean = !failed && verdicts.every((v) => v.value !== null && v.verified !== false);
process.exit(clean ? 0 : 1);
