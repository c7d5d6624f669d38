// Keeps docker-compose.yml honest on machines without a Docker engine. Every service built from
// our Dockerfile is started as a local process running the image's command from TypeScript
// sources, with exactly the compose environment (interpolated from a test .env), each service on
// its own loopback address with its compose container ports. PostgreSQL and Redis are the test's
// own (a fresh, empty database clone; the shared Redis). Services start in depends_on order and
// must pass the compose healthchecks; then a message goes through the stack.
import { spawn } from "node:child_process";
import { randomBytes, randomInt, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { cloneTemplateDatabase, redisUrl } from "@switchboard/testkit";
import { startServiceProcess, type ServiceProcess } from "@switchboard/testkit/service-process";
import { describe, expect, onTestFinished, test } from "vitest";
import WebSocket from "ws";
import { parse } from "yaml";
import {
  dependenciesOf,
  environmentOf,
  healthcheckCommand,
  readCompose,
  readDockerfileRuntime,
  type ComposeService,
} from "./compose-file.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const COMPOSE_FILE = join(ROOT, "docker-compose.yml");
const OUR_DOCKERFILE = "infra/docker/service.Dockerfile";
const READY_TIMEOUT_MS = 180_000;

/** What the test's `.env` holds: the secrets compose requires. */
const dotEnv = {
  WHATSAPP_APP_TOKEN: randomBytes(24).toString("base64url"),
  MESSENGER_APP_TOKEN: randomBytes(24).toString("base64url"),
  INSTAGRAM_APP_TOKEN: randomBytes(24).toString("base64url"),
};

const compose = readCompose(COMPOSE_FILE);
const services = Object.entries(compose.services);
const isOurs = (s: ComposeService) => s.build?.dockerfile === OUR_DOCKERFILE;
const ours = services.filter(([, s]) => isOurs(s));
const postgresService = services.find(([, s]) => s.image?.startsWith("postgres:"))?.[0];
const redisService = services.find(([, s]) => s.image?.startsWith("redis:"))?.[0];
/** One-shot jobs: services some other service waits for with service_completed_successfully. */
const jobs = new Set(
  services.flatMap(([, s]) =>
    Object.entries(dependenciesOf(s))
      .filter(([, condition]) => condition === "service_completed_successfully")
      .map(([name]) => name),
  ),
);

/** The URL a compose healthcheck fetches (`node -e "fetch('http://127.0.0.1:…')…"`). */
function healthUrlOf(name: string, service: ComposeService): URL {
  const command = healthcheckCommand(service);
  const url = command?.join(" ").match(/https?:\/\/[^'"\s)]+/)?.[0];
  if (!url) throw new Error(`service ${name} has no HTTP healthcheck`);
  return new URL(url);
}

/** Runs a command to its end; resolves with its exit code and output. */
function run(command: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }) {
  return new Promise<{ code: number | null; output: string }>((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolvePromise({ code, output }));
  });
}

/** True when `docker-compose` is on the PATH. */
async function hasDockerCompose(): Promise<boolean> {
  try {
    return (await run("docker-compose", ["version"], { cwd: ROOT })).code === 0;
  } catch {
    return false;
  }
}

describe("docker-compose.yml", () => {
  test("validates with docker-compose config -q", async (ctx) => {
    if (!(await hasDockerCompose()))
      ctx.skip(
        "docker-compose is not installed (Debian: apt-get install docker-compose); .ci/run installs it",
      );
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", ...dotEnv };
    const ok = await run("docker-compose", ["-f", COMPOSE_FILE, "config", "-q"], { cwd: ROOT, env });
    expect(ok.output).toBe("");
    expect(ok.code).toBe(0);
    // No defaults for secrets: without the tokens the file does not resolve.
    const missing = await run("docker-compose", ["-f", COMPOSE_FILE, "config", "-q"], {
      cwd: ROOT,
      env: { PATH: env.PATH },
    });
    expect(missing.code).not.toBe(0);
    expect(missing.output).toContain("_APP_TOKEN");
  });

  test("gives every long-running service a healthcheck and Prometheus a target on its metrics", () => {
    const prometheus = parse(readFileSync(join(ROOT, "infra/monitoring/prometheus.yml"), "utf8")) as {
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    const targets = prometheus.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
    for (const [name, service] of services) {
      if (jobs.has(name)) continue;
      expect(service.healthcheck?.test, `${name} healthcheck`).toBeDefined();
      if (!isOurs(service)) continue;
      // Each of our services serves /metrics beside /healthz.
      expect(targets, `${name} scraped`).toContain(`${name}:${healthUrlOf(name, service).port}`);
    }
  });

  test("makes every service depend on the services its environment names", () => {
    const names = new Set(services.map(([n]) => n));
    for (const [name, service] of services) {
      const referenced = new Set<string>();
      for (const value of Object.values(environmentOf(service, dotEnv))) {
        for (const m of value.matchAll(/(?:^|[@/,=])([a-z0-9][a-z0-9_.-]*):[0-9]+/g))
          if (m[1] !== undefined && names.has(m[1])) referenced.add(m[1]);
      }
      expect(Object.keys(dependenciesOf(service)), name).toEqual(expect.arrayContaining([...referenced]));
    }
  });

  test("runs as local processes in depends_on order, passes its healthchecks and carries messages", async () => {
    const database = await cloneTemplateDatabase();
    onTestFinished(() => database.drop());

    // Our services on 127.<a>.<b>.11, .12, …: Linux routes all of 127.0.0.0/8 to lo, and a random
    // /24 keeps concurrent runs apart.
    const subnet = `127.${randomInt(1, 255)}.${randomInt(0, 256)}`;
    const addresses = new Map(ours.map(([name], i) => [name, `${subnet}.${11 + i}`]));
    const addressOf = (name: string) => {
      const a = addresses.get(name);
      if (!a) throw new Error(`no address for ${name}`);
      return a;
    };

    /** A compose env value with service host names mapped to the local servers and addresses. */
    const localValue = (value: string): string => {
      try {
        const url = new URL(value);
        if (url.hostname === postgresService && /^postgres(ql)?:$/.test(url.protocol)) return database.url;
        if (url.hostname === redisService && /^rediss?:$/.test(url.protocol)) return redisUrl();
      } catch {
        // Not a URL.
      }
      return value.replace(/\b([a-z0-9][a-z0-9_.-]*):([0-9]+)\b/g, (m, host: string, port: string) =>
        addresses.has(host) ? `${addressOf(host)}:${port}` : m,
      );
    };

    const runtime = readDockerfileRuntime(join(ROOT, OUR_DOCKERFILE));
    /** How a service runs here: its package directory, TypeScript entry point and environment. */
    const localCommand = (name: string, service: ComposeService) => {
      const pkg = service.build?.args?.SERVICE;
      if (!pkg) throw new Error(`${name}: no SERVICE build arg`);
      const command = service.command ?? runtime.command;
      // `node [--flag ...] dist/<entry>.js`: the flags (V8's, which NODE_OPTIONS refuses) run here too.
      const flags = command[0] === "node" ? command.slice(1).filter((a) => a.startsWith("--")) : [];
      const entry = command[0] === "node" ? /^dist\/(.+)\.js$/.exec(command[1 + flags.length] ?? "") : null;
      if (!entry || command.length !== 2 + flags.length)
        throw new Error(
          `${name}: expected "node [--flag ...] dist/<entry>.js", got ${JSON.stringify(command)}`,
        );
      const env: Record<string, string> = { ...runtime.env };
      for (const [key, value] of Object.entries(environmentOf(service, dotEnv))) env[key] = localValue(value);
      // Each service binds its own address, on the compose container ports.
      for (const kind of ["GRPC", "HTTP"]) if (`${kind}_PORT` in env) env[`${kind}_HOST`] = addressOf(name);
      // `env -i`: the process sees the compose environment and nothing of this one (as in a container).
      const args = [
        "-i",
        `PATH=${process.env.PATH ?? "/usr/bin:/bin"}`,
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        process.execPath,
        ...flags,
        "--conditions=switchboard-source",
        "--import",
        "tsx",
        `src/${entry[1]}.ts`,
      ];
      return { cwd: join(ROOT, "services", pkg), args, env };
    };

    const running: ServiceProcess[] = [];
    onTestFinished(async () => {
      for (const p of running.reverse()) await p.stop();
    });

    const done = new Set<string>([postgresService, redisService].filter((n): n is string => n !== undefined));
    const startOne = async ([name, service]: [string, ComposeService]) => {
      const local = localCommand(name, service);
      if (jobs.has(name)) {
        const r = await run("env", local.args, { cwd: local.cwd });
        if (r.code !== 0) throw new Error(`${name} exited ${r.code}:\n${r.output}`);
        return;
      }
      const health = healthUrlOf(name, service);
      health.hostname = addressOf(name);
      const proc = await startServiceProcess({
        name,
        cwd: local.cwd,
        command: "env",
        args: local.args,
        env: {},
        ready: async () => {
          try {
            return (await fetch(health, { signal: AbortSignal.timeout(2_000) })).ok;
          } catch {
            return false;
          }
        },
        readyTimeoutMs: READY_TIMEOUT_MS,
      });
      running.push(proc);
      // The healthcheck command itself, as compose would run it (inside the service's "container").
      const check = (healthcheckCommand(service) ?? []).map((a) =>
        a.replaceAll("127.0.0.1", addressOf(name)),
      );
      const [cmd, ...args] = check;
      const r = await run(cmd === "node" ? process.execPath : (cmd ?? "false"), args, { cwd: local.cwd });
      expect(r.code, `${name} healthcheck: ${r.output}`).toBe(0);
    };

    // Start, wave by wave, every service whose dependencies are healthy (or, for jobs, completed).
    const order: string[][] = [];
    let pending = ours;
    while (pending.length > 0) {
      const wave = pending.filter(([, s]) => Object.keys(dependenciesOf(s)).every((d) => done.has(d)));
      if (wave.length === 0)
        throw new Error(`unsatisfiable depends_on: ${pending.map(([n]) => n).join(", ")}`);
      await Promise.all(wave.map(startOne));
      for (const [name] of wave) done.add(name);
      order.push(wave.map(([n]) => n));
      pending = pending.filter((p) => !wave.includes(p));
    }
    expect(order[0]).toEqual(["migrate"]);
    expect(running.map((p) => p.name).sort()).toEqual(
      ours
        .map(([n]) => n)
        .filter((n) => !jobs.has(n))
        .sort(),
    );

    const baseOf = (name: string) => {
      const service = compose.services[name];
      if (!service) throw new Error(`no service ${name}`);
      const u = healthUrlOf(name, service);
      return `http://${addressOf(name)}:${u.port}`;
    };
    const messenger = baseOf("gateway-messenger");
    const instagram = baseOf("gateway-instagram");

    // Two Messenger-style users (gateway-messenger → delivery-2); Bob listens on the WebSocket.
    const ada = await post<Credential>(`${messenger}/v1/signup`, { registration_id: 101 });
    const bob = await post<Credential>(`${messenger}/v1/signup`, { registration_id: 202 });
    const bobStream = await openStream(messenger, bob.access_token);
    await bobStream.until((e) => e.some((x) => x.type === "queue_empty"));

    const first = randomBytes(48).toString("base64");
    await post(
      `${messenger}/v1/me/messages`,
      {
        recipient: { id: bob.user.id },
        message: {
          mid: randomUUID(),
          ciphertexts: [{ device_id: 1, registration_id: 202, type: "ciphertext", body: first }],
        },
      },
      ada.access_token,
    );
    await bobStream.until((e) => e.some((x) => x.type === "message" && x.body === first));
    expect(bobStream.events.find((x) => x.body === first)?.sender).toMatchObject({
      app: "messenger",
      id: ada.user.id,
    });

    // An Instagram-style user (gateway-instagram → delivery-1) writes to Bob: across apps and
    // across delivery replicas.
    const cy = await post<{ access_token: string }>(`${instagram}/v1/accounts`, {
      username: `cy_${randomBytes(4).toString("hex")}`,
      registration_id: 303,
    });
    const thread = await post<{ thread_id: string }>(
      `${instagram}/v1/direct/threads`,
      { recipients: [`messenger:${bob.user.id}`] },
      cy.access_token,
    );
    const second = randomBytes(48).toString("base64");
    await post(
      `${instagram}/v1/direct/threads/${thread.thread_id}/items`,
      {
        client_context: randomUUID(),
        ciphertexts: [{ device_id: 1, registration_id: 202, type: "ciphertext", body: second }],
      },
      cy.access_token,
    );
    await bobStream.until((e) => e.some((x) => x.type === "message" && x.body === second));
    expect(bobStream.events.find((x) => x.body === second)?.sender).toMatchObject({ app: "instagram" });

    // Every Prometheus target answers on its local address.
    const prometheus = parse(readFileSync(join(ROOT, "infra/monitoring/prometheus.yml"), "utf8")) as {
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    const targets = prometheus.scrape_configs
      .flatMap((c) => c.static_configs.flatMap((s) => s.targets))
      .filter((t) => addresses.has(t.split(":")[0] ?? ""));
    expect(targets.length).toBe(running.length);
    const exported = new Set<string>();
    for (const target of targets) {
      const res = await fetch(`http://${localValue(target)}/metrics`);
      expect(res.status, target).toBe(200);
      const text = await res.text();
      expect(text, target).toMatch(/^switchboard_/m);
      for (const m of text.matchAll(/^# TYPE (\S+) /gm)) exported.add(m[1] ?? "");
    }

    // The Grafana dashboard is valid JSON and queries only metrics the services export.
    const dashboard = JSON.parse(
      readFileSync(join(ROOT, "infra/monitoring/grafana/dashboards/switchboard.json"), "utf8"),
    ) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const used = new Set(
      dashboard.panels.flatMap((p) =>
        p.targets.flatMap((t) =>
          [...t.expr.matchAll(/switchboard_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, "")),
        ),
      ),
    );
    expect(used.size).toBeGreaterThan(3);
    for (const name of used) expect(exported.has(name), `dashboard metric ${name}`).toBe(true);
  });
});

interface Credential {
  user: { id: string; account_id: string };
  access_token: string;
}

/** POSTs JSON (with a bearer token); resolves with the parsed 2xx body, throws otherwise. */
async function post<T = unknown>(url: string, body: unknown, token?: string): Promise<T> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

interface StreamEvent {
  type: string;
  server_id?: string;
  body?: string;
  sender?: Record<string, unknown>;
}

/** A Messenger-style WebSocket that collects events and acknowledges messages. */
async function openStream(base: string, token: string) {
  const socket = new WebSocket(`${base.replace(/^http/, "ws")}/v1/stream`, {
    headers: { authorization: `Bearer ${token}` },
  });
  onTestFinished(() => socket.terminate());
  const events: StreamEvent[] = [];
  socket.on("message", (data: Buffer) => {
    const event = JSON.parse(data.toString("utf8")) as StreamEvent;
    events.push(event);
    if (event.server_id) socket.send(JSON.stringify({ type: "ack", ids: [event.server_id] }));
  });
  await new Promise<void>((resolveOpen, reject) => {
    socket.once("open", () => resolveOpen());
    socket.once("error", reject);
  });
  return {
    events,
    async until(predicate: (e: StreamEvent[]) => boolean, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(events)) {
        if (Date.now() > deadline)
          throw new Error(`not within ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => e.type))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}
