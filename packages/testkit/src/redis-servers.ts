// Real Redis for integration tests: the shared one named by REDIS_URL, and private
// redis-server processes (single servers and three-master clusters) that tests may stop and restart.
import { spawn, execFile } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort } from "./ports.js";

/** The shared Redis: `REDIS_URL`, else a local default. */

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A fresh channel prefix, `t<12 hex>:`, so tests sharing one Redis never see each other's events. */
export function uniquePrefix(): string {
  return `t${randomBytes(6).toString("hex")}:`;
}

/** An admin connection that fails fast instead of retrying. */
export function adminClient(options: { url?: string; port?: number }): Redis {
  const fastFail = {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
  };
  return options.url !== undefined
    ? new Redis(options.url, fastFail)
    : new Redis({ host: "127.0.0.1", port: options.port ?? 6379, ...fastFail });
}

/** Throw a clear error unless the shared Redis answers PING. */
export async function assertRedisReachable(url: string = REDIS_URL): Promise<void> {
  const redis = adminClient({ url });
  redis.on("error", () => {});
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `Redis is not reachable at ${redactUrl(url)} (${reason}). ` +
        "The fanout integration tests need a real Redis 7: start one there or set REDIS_URL to one.",
      { cause: err },
    );
  } finally {
    redis.disconnect();
  }
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.href;
  } catch {
    return "<unparseable URL>";
  }
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A redis-server process on a loopback port, stoppable and restartable on the same port. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Kill the process (SIGKILL, like a crash) and wait for it to exit. */
  kill(): Promise<void>;
  /** Start it again on the same port with the same arguments. */
  start(): Promise<void>;
  /** Freeze the process (SIGSTOP): connections stay open but nothing answers, like a silent partition. */
  pause(): void;
  /** Let a paused process run again (SIGCONT). */
  resume(): void;
}

/** Start redis-server on a free port (and a free port + 10000 when `cluster`), see ports.ts. */
export async function startRedisServer(options: { dir: string; cluster?: boolean }): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeRedisPort(options.cluster === true);
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.push("--daemonize", "no", "--dir", options.dir, "--logfile", join(options.dir, `redis-${port}.log`));
    if (options.cluster === true) {
      args.push("--cluster-enabled", "yes", "--cluster-config-file", join(options.dir, `nodes-${port}.conf`));
    }
    const server = new SpawnedRedis(port, args);
    try {
      await server.start();
      return server;
    } catch (err) {
      await server.kill();
      if (attempt >= 3) throw err;
    }
  }
}

class SpawnedRedis implements RedisServer {
  private child: ChildProcess | undefined;
  readonly url: string;

  constructor(
    readonly port: number,
    private readonly args: string[],
  ) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    if (this.child !== undefined) throw new Error(`redis-server on ${this.port} is already running`);
    const child = spawn("redis-server", this.args, { stdio: "ignore" });
    this.child = child;
    running.add(child);
    const exited = new Promise<never>((_, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`redis-server on ${this.port} exited with ${code}`)));
    });
    exited.catch(() => {});
    await Promise.race([waitForPing(this.port, 10_000), exited]);
  }

  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined) return;
    running.delete(child);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  }
}

async function waitForPing(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const redis = adminClient({ port });
    redis.on("error", () => {});
    try {
      await redis.connect();
      if ((await redis.ping()) === "PONG") return;
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`redis-server on ${port} did not answer PING`, { cause: err });
    } finally {
      redis.disconnect();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A free port (reserved among this machine's test processes), and its cluster bus port + 10000. */
function freeRedisPort(withClusterBus: boolean): Promise<number> {
  return freePort(withClusterBus ? { alsoFree: 10_000 } : {});
}

/** A local Redis Cluster of three masters without replicas. */
export interface RedisCluster {
  readonly servers: RedisServer[];
  readonly nodes: Array<{ host: string; port: number }>;
  /** Wait until every node reports `cluster_state:ok`. */
  waitUntilHealthy(timeoutMs?: number): Promise<void>;
  /** The port of the master that serves `slot`. */
  ownerPort(slot: number): Promise<number>;
  /** Stop every server and delete their files. */
  stop(): Promise<void>;
}

/** Start three cluster-enabled servers, join them with `redis-cli --cluster create`, wait for `cluster_state:ok`. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), "fanout-cluster-"));
  const servers: RedisServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((server) => server.kill()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) servers.push(await startRedisServer({ dir, cluster: true }));
    const addresses = servers.map((server) => `127.0.0.1:${server.port}`);
    await promisify(execFile)("redis-cli", [
      "--cluster",
      "create",
      ...addresses,
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    const cluster: RedisCluster = {
      servers,
      nodes: servers.map((server) => ({ host: "127.0.0.1", port: server.port })),
      waitUntilHealthy: (timeoutMs = 30_000) => waitUntilHealthy(servers, timeoutMs),
      ownerPort: (slot) => ownerPort(servers, slot),
      stop,
    };
    await cluster.waitUntilHealthy();
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitUntilHealthy(servers: RedisServer[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(
      servers.map(async (server) => {
        const redis = adminClient({ port: server.port });
        redis.on("error", () => {});
        try {
          await redis.connect();
          const info = String(await redis.call("CLUSTER", "INFO"));
          return /cluster_state:ok/.test(info);
        } catch {
          return false;
        } finally {
          redis.disconnect();
        }
      }),
    );
    if (states.every(Boolean)) return;
    if (Date.now() > deadline)
      throw new Error(`cluster not healthy after ${timeoutMs} ms: ${states.join(",")}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function ownerPort(servers: RedisServer[], slot: number): Promise<number> {
  for (const server of servers) {
    const redis = adminClient({ port: server.port });
    redis.on("error", () => {});
    try {
      await redis.connect();
      const ranges = (await redis.call("CLUSTER", "SLOTS")) as Array<
        [number, number, [string, number, ...unknown[]]]
      >;
      const range = ranges.find(([start, end]) => start <= slot && slot <= end);
      if (range !== undefined) return range[2][1];
    } catch {
      // This node is down; ask the next one.
    } finally {
      redis.disconnect();
    }
  }
  throw new Error(`no node knows the owner of slot ${slot}`);
}
