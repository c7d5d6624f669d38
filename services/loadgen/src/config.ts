// The load generator's command line and environment: the only file that reads process.env.
import { randomInt } from "node:crypto";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULTS, MODES, type LoadgenOptions, type Mode } from "./options.js";
import type { WatchedProcess } from "./proc-sampler.js";
import { APP_NAMES, type AppName } from "./topology.js";

/** A bad command line; `problems` lists everything wrong at once. */
export class UsageError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "UsageError";
  }
}

/** The `--help` text. */
export const USAGE = `Usage: pnpm loadtest [options]

Drives a running delivery service with simulated devices, verifies every delivery and writes a
report. Exit status: 0 when nothing was lost, duplicated or reordered and no error occurred;
1 otherwise; 2 for a bad command line or a failed setup.

System under test
  --via delivery|gateways   drive the delivery API directly (default), or go through the three
                            gateways' native APIs (--mode gateways; the full path)
  --target HOST:PORT        delivery gRPC address (default ${DEFAULTS.target})
  --app-token TOKEN         the delivery service's APP_TOKENS whatsapp entry (env LOADGEN_APP_TOKEN)
  --app-tokens APP=TOKEN,.. tokens of whatsapp, messenger, instagram (env LOADGEN_APP_TOKENS)
  --mode MODE               delivery-stream (sends on Connect streams), delivery-unary
                            (unary SendMessage), or gateways; default ${DEFAULTS.mode}
  --whatsapp HOST:PORT      gateways: the WhatsApp-style gateway (gRPC)
  --whatsapp-admin URL      gateways: its DEV_ADMIN endpoint, for verification codes
                            (default http://<whatsapp host>:50062)
  --messenger URL           gateways: the Messenger-style gateway, e.g. http://127.0.0.1:8081
  --instagram URL           gateways: the Instagram-style gateway, e.g. http://127.0.0.1:8082
  --streams N               Connect streams per app token (default ${DEFAULTS.streams})
  --window N                unacknowledged deliveries in flight per device (default ${DEFAULTS.window})
  --messenger-sends socket|http
                            gateways: Messenger-style sends as frames on the device's WebSocket
                            or as POST /v1/me/messages requests (default ${DEFAULTS.messengerSends})
  --server-receipts on|off  one-to-one sends ask for server delivery receipts (on, the default) or
                            not (off: no_delivery_receipt, as clients that send their own end-to-end
                            receipts); receipts are counted, not verified
  --whatsapp-connections N  gateways: HTTP/2 connections the WhatsApp-style devices share; 0 (default):
                            one per device, as real clients have
  --whatsapp-chat h2|grpc-js
                            gateways: the WhatsApp-style Chat streams over the load generator's
                            lean HTTP/2 client or over the SDK's grpc-js channel (default ${DEFAULTS.whatsappChat})

Population
  --devices N               simulated devices (default ${DEFAULTS.devices}); accounts are paired one-to-one
  --devices-per-account K   devices per account, 1..6 (default ${DEFAULTS.devicesPerAccount})
  --mix APP=W,..            accounts per app, e.g. whatsapp=40,messenger=30,instagram=30
                            (default: 40/30/30 over the apps that have a token)
  --groups K                groups (default ${DEFAULTS.groups})
  --group-size S            member accounts per group (default ${DEFAULTS.groupSize})
  --group-share F           fraction of sends that are group sends (default ${DEFAULTS.groupShare} with groups)
  --register-concurrency N  registrations in flight during setup (default ${DEFAULTS.registerConcurrency})
  --population FILE         reuse the accounts, devices and groups saved in FILE (same database, same
                            --devices/--devices-per-account/--mix/--groups/--group-size); when FILE
                            does not exist, register and save them there

Traffic
  --rate N                  open loop: N sends/s at fixed intervals, latency measured from each
                            send's intended time (default ${DEFAULTS.ratePerSecond})
  --closed-loop             closed loop: keep --inflight sends outstanding (maximum throughput)
  --until delivered|result  closed loop: a send is outstanding until every recipient has it
                            (default), or only until its result arrives
  --inflight N              closed loop: sends outstanding (default ${DEFAULTS.closedLoopInflight}); open loop: cap on
                            outstanding sends, later ones wait and count late (default ${DEFAULTS.openLoopInflight})
  --duration S              measured seconds (default ${DEFAULTS.durationSeconds})
  --warmup S                seconds of traffic before measuring (default ${DEFAULTS.warmupSeconds})
  --size BYTES              payload bytes, 32-byte header included (default ${DEFAULTS.sizeBytes})
  --payload KIND            random, or signal (libsignal ciphertext, pre-encrypted; default ${DEFAULTS.payload})
  --signal-pool N           signal: ciphertexts pre-encrypted per sender/recipient (default ${DEFAULTS.signalPoolSize})
  --seed N                  seed of the topology and traffic (default random)

After traffic
  --drain-quiet S           stop waiting for owed deliveries after S s without any (default ${DEFAULTS.drainQuietSeconds})
  --drain-timeout S         stop waiting after S s in any case (default ${DEFAULTS.drainTimeoutSeconds})
  --send-timeout S          a send without a result after S s fails (default ${DEFAULTS.sendTimeoutSeconds})

Output
  --out DIR                 write DIR/report.json and DIR/report.html (default reports/<time>-<mode>;
                            relative to the directory pnpm was started in); --no-report writes none
  --name NAME               report title (default: the --out directory's name)
  --pids NAME=PID,..        sample CPU and RSS of these processes (and their children) every second
  --watch-process NAME=PID  the same, one process per flag (repeatable)
  --interval-ms N           progress line and time series interval (default ${DEFAULTS.intervalMs})
  -h, --help                this text
`;

const OPTIONS = {
  target: { type: "string" },
  "app-token": { type: "string" },
  "app-tokens": { type: "string" },
  mode: { type: "string" },
  via: { type: "string" },
  whatsapp: { type: "string" },
  "whatsapp-admin": { type: "string" },
  messenger: { type: "string" },
  instagram: { type: "string" },
  streams: { type: "string" },
  window: { type: "string" },
  "messenger-sends": { type: "string" },
  "server-receipts": { type: "string" },
  "whatsapp-connections": { type: "string" },
  "whatsapp-chat": { type: "string" },
  devices: { type: "string" },
  "devices-per-account": { type: "string" },
  mix: { type: "string" },
  groups: { type: "string" },
  "group-size": { type: "string" },
  "group-share": { type: "string" },
  "register-concurrency": { type: "string" },
  population: { type: "string" },
  rate: { type: "string" },
  "closed-loop": { type: "boolean" },
  until: { type: "string" },
  inflight: { type: "string" },
  duration: { type: "string" },
  warmup: { type: "string" },
  size: { type: "string" },
  payload: { type: "string" },
  "signal-pool": { type: "string" },
  seed: { type: "string" },
  "drain-quiet": { type: "string" },
  "drain-timeout": { type: "string" },
  "send-timeout": { type: "string" },
  out: { type: "string" },
  "no-report": { type: "boolean" },
  name: { type: "string" },
  pids: { type: "string", multiple: true },
  "watch-process": { type: "string", multiple: true },
  "interval-ms": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** `a=b,c=d` into pairs; problems for malformed entries. */
function pairs(raw: string, flag: string, problems: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of raw
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0 || eq === part.length - 1) problems.push(`${flag}: expected NAME=VALUE, got "${part}"`);
    else out.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
  }
  return out;
}

const isApp = (s: string): s is AppName => (APP_NAMES as readonly string[]).includes(s);

/** The result of parsing: options to run, or a request for help. */
export type CommandLine = { help: true } | { help: false; options: LoadgenOptions };

/**
 * Parses the command line (`argv` without node and script) and the environment into options.
 * Throws {@link UsageError} listing every problem. Relative `--out` paths resolve against `cwd`.
 */
export function parseCommandLine(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
  cwd: string = env.INIT_CWD ?? process.cwd(),
): CommandLine {
  let parsed;
  try {
    parsed = parseArgs({ args: argv.filter((a) => a !== "--"), options: OPTIONS, strict: true });
  } catch (err) {
    throw new UsageError([err instanceof Error ? err.message : String(err)]);
  }
  const v = parsed.values;
  if (v.help) return { help: true };
  const problems: string[] = [];

  const num = (
    flag: string,
    raw: string | undefined,
    def: number,
    min: number,
    max = Infinity,
    int = true,
  ) => {
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min || n > max) {
      problems.push(`--${flag}: expected ${int ? "an integer" : "a number"} in ${min}..${max}, got "${raw}"`);
      return def;
    }
    return n;
  };

  const appTokens: Partial<Record<AppName, string>> = {};
  const tokensRaw = v["app-tokens"] ?? env.LOADGEN_APP_TOKENS;
  if (tokensRaw !== undefined) {
    for (const [app, token] of pairs(tokensRaw, "--app-tokens", problems)) {
      if (!isApp(app)) problems.push(`--app-tokens: unknown app "${app}" (expected ${APP_NAMES.join(", ")})`);
      else appTokens[app] = token;
    }
  }
  const single = v["app-token"] ?? env.LOADGEN_APP_TOKEN;
  if (single !== undefined) appTokens.whatsapp ??= single;

  let mode = (v.mode ?? DEFAULTS.mode) as Mode;
  if (v.via !== undefined) {
    if (v.via === "gateways") {
      if (v.mode !== undefined && v.mode !== "gateways")
        problems.push(`--via gateways and --mode ${v.mode} exclude each other`);
      mode = "gateways";
    } else if (v.via === "delivery") {
      if (v.mode === "gateways") problems.push("--via delivery and --mode gateways exclude each other");
    } else problems.push(`--via: expected delivery or gateways, got "${v.via}"`);
  }
  if (!(MODES as readonly string[]).includes(mode))
    problems.push(`--mode: expected one of ${MODES.join(", ")}, got "${mode}"`);
  const viaGateways = mode === "gateways";

  const gateways: LoadgenOptions["gateways"] = {};
  if (v.whatsapp !== undefined) {
    if (!/^[^\s:/]+:\d+$/.test(v.whatsapp))
      problems.push(`--whatsapp: expected HOST:PORT, got "${v.whatsapp}"`);
    gateways.whatsapp = v.whatsapp;
    gateways.whatsappAdmin = v["whatsapp-admin"] ?? `http://${v.whatsapp.replace(/:\d+$/, "")}:50062`;
  }
  for (const app of ["messenger", "instagram"] as const) {
    const url = v[app];
    if (url === undefined) continue;
    if (!/^https?:\/\/[^\s/]+/.test(url))
      problems.push(`--${app}: expected a URL like http://127.0.0.1:8081, got "${url}"`);
    gateways[app] = url;
  }
  if (v["whatsapp-admin"] !== undefined && v.whatsapp === undefined)
    problems.push("--whatsapp-admin needs --whatsapp");
  const reachable = (app: AppName) =>
    viaGateways ? gateways[app] !== undefined : appTokens[app] !== undefined;
  if (viaGateways) {
    if (APP_NAMES.every((a) => gateways[a] === undefined))
      problems.push("--via gateways needs at least one of --whatsapp, --messenger, --instagram");
  } else if (Object.keys(appTokens).length === 0)
    problems.push("an app token is required: --app-token (or LOADGEN_APP_TOKEN), or --app-tokens");

  let mix: Array<{ app: AppName; weight: number }>;
  if (v.mix !== undefined) {
    mix = [];
    for (const [app, w] of pairs(v.mix, "--mix", problems)) {
      const weight = Number(w);
      if (!isApp(app)) problems.push(`--mix: unknown app "${app}" (expected ${APP_NAMES.join(", ")})`);
      else if (!Number.isFinite(weight) || weight < 0) problems.push(`--mix: bad weight "${w}" for ${app}`);
      else if (weight > 0) mix.push({ app, weight });
    }
    if (mix.length === 0) problems.push("--mix: at least one app needs a weight above 0");
  } else {
    mix = APP_NAMES.filter(reachable).map((app) => ({
      app,
      weight: DEFAULTS.mix[app],
    }));
  }
  for (const m of mix) {
    if (viaGateways && gateways[m.app] === undefined)
      problems.push(`--mix includes ${m.app} but its gateway was not given (--${m.app} ...)`);
    else if (!viaGateways && appTokens[m.app] === undefined && Object.keys(appTokens).length > 0)
      problems.push(`--mix includes ${m.app} but no token was given for it (--app-tokens ${m.app}=...)`);
  }
  const payload = v.payload ?? DEFAULTS.payload;
  if (payload !== "random" && payload !== "signal")
    problems.push(`--payload: expected random or signal, got "${payload}"`);

  const groups = num("groups", v.groups, DEFAULTS.groups, 0, 100_000);
  const groupShare = num("group-share", v["group-share"], groups > 0 ? DEFAULTS.groupShare : 0, 0, 1, false);
  if (groupShare > 0 && groups === 0) problems.push("--group-share needs --groups above 0");

  const closedLoop = v["closed-loop"] ?? false;
  if (closedLoop && v.rate !== undefined) problems.push("--rate and --closed-loop exclude each other");
  const messengerSends = v["messenger-sends"] ?? DEFAULTS.messengerSends;
  if (messengerSends !== "socket" && messengerSends !== "http")
    problems.push(`--messenger-sends: expected socket or http, got "${messengerSends}"`);
  const whatsappChat = v["whatsapp-chat"] ?? DEFAULTS.whatsappChat;
  if (whatsappChat !== "h2" && whatsappChat !== "grpc-js")
    problems.push(`--whatsapp-chat: expected h2 or grpc-js, got "${whatsappChat}"`);
  const serverReceipts = v["server-receipts"] ?? "on";
  if (serverReceipts !== "on" && serverReceipts !== "off")
    problems.push(`--server-receipts: expected on or off, got "${serverReceipts}"`);
  const until = v.until ?? "delivered";
  if (until !== "delivered" && until !== "result")
    problems.push(`--until: expected delivered or result, got "${until}"`);
  else if (v.until !== undefined && !closedLoop) problems.push("--until needs --closed-loop");

  const watch: WatchedProcess[] = [];
  for (const raw of [...(v.pids ?? []), ...(v["watch-process"] ?? [])]) {
    for (const [name, pid] of pairs(raw, "--pids/--watch-process", problems)) {
      const n = Number(pid);
      if (!Number.isInteger(n) || n <= 0) problems.push(`--pids: bad pid "${pid}" for ${name}`);
      else watch.push({ name, pid: n });
    }
  }

  const target = v.target ?? DEFAULTS.target;
  if (!/^[^\s:]+:\d+$/.test(target) && !/^\[[0-9a-f:]+\]:\d+$/i.test(target))
    problems.push(`--target: expected HOST:PORT, got "${target}"`);

  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const outDir = v["no-report"] ? undefined : resolve(cwd, v.out ?? `reports/${stamp}-${mode}`);

  const options: LoadgenOptions = {
    target,
    appTokens,
    devices: num("devices", v.devices, DEFAULTS.devices, 2, 1_000_000),
    devicesPerAccount: num("devices-per-account", v["devices-per-account"], DEFAULTS.devicesPerAccount, 1, 6),
    mix,
    groups,
    groupSize: num("group-size", v["group-size"], DEFAULTS.groupSize, 2, 1000),
    groupShare,
    sizeBytes: num("size", v.size, DEFAULTS.sizeBytes, 32, 256 * 1024),
    ratePerSecond: num("rate", v.rate, DEFAULTS.ratePerSecond, 0.001, 10_000_000, false),
    closedLoop,
    until: until === "result" ? "result" : "delivered",
    inflight: num(
      "inflight",
      v.inflight,
      closedLoop ? DEFAULTS.closedLoopInflight : DEFAULTS.openLoopInflight,
      1,
      1_000_000,
    ),
    durationSeconds: num("duration", v.duration, DEFAULTS.durationSeconds, 0.1, 86_400, false),
    warmupSeconds: num("warmup", v.warmup, DEFAULTS.warmupSeconds, 0, 3600, false),
    mode,
    payload: payload === "signal" ? "signal" : "random",
    signalPoolSize: num("signal-pool", v["signal-pool"], DEFAULTS.signalPoolSize, 1, 10_000),
    streams: num("streams", v.streams, DEFAULTS.streams, 1, 256),
    gateways,
    window: num("window", v.window, DEFAULTS.window, 1, 1000),
    messengerSends: messengerSends === "http" ? "http" : "socket",
    serverReceipts: serverReceipts !== "off",
    whatsappConnections: num(
      "whatsapp-connections",
      v["whatsapp-connections"],
      DEFAULTS.whatsappConnections,
      0,
      100_000,
    ),
    whatsappChat: whatsappChat === "grpc-js" ? "grpc-js" : "h2",
    outDir,
    name: v.name ?? (outDir ? basename(outDir) : "loadtest"),
    watch,
    populationFile: v.population === undefined ? undefined : resolve(cwd, v.population),
    registerConcurrency: num(
      "register-concurrency",
      v["register-concurrency"],
      DEFAULTS.registerConcurrency,
      1,
      1000,
    ),
    drainQuietSeconds: num("drain-quiet", v["drain-quiet"], DEFAULTS.drainQuietSeconds, 0.1, 3600, false),
    drainTimeoutSeconds: num(
      "drain-timeout",
      v["drain-timeout"],
      DEFAULTS.drainTimeoutSeconds,
      0.1,
      86_400,
      false,
    ),
    sendTimeoutSeconds: num("send-timeout", v["send-timeout"], DEFAULTS.sendTimeoutSeconds, 0.1, 3600, false),
    seed: num("seed", v.seed, randomInt(1, 2 ** 31), 0, 2 ** 32 - 1),
    intervalMs: num("interval-ms", v["interval-ms"], DEFAULTS.intervalMs, 50, 60_000),
  };
  if (options.payload === "signal" && options.sizeBytes < 96)
    problems.push("--size: signal payloads need at least 96 bytes (header and ciphertext overhead)");
  if (problems.length > 0) throw new UsageError(problems);
  return { help: false, options };
}
