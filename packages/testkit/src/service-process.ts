// Services as real OS processes, for end-to-end, compose and fault tests: start one with its
// environment, wait until it is ready, stop it (gracefully or with SIGKILL) and start it again.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";

/** How to start a service process. */
export interface ServiceProcessOptions {
  /** A name for logs and errors. */
  name: string;
  /** Working directory (e.g. the service's package directory). */
  cwd: string;
  /** The executable (default: this Node binary). */
  command?: string;
  /** Its arguments (default: run `src/main.ts` from TypeScript sources with tsx). */
  args?: string[];
  /** Environment added to this process's environment. */
  env: Record<string, string>;
  /** Resolves true once the service is ready (polled every 100 ms). */
  ready: () => Promise<boolean>;
  /** How long to wait for readiness (default 30 s). */
  readyTimeoutMs?: number;
  /** Receives everything the process writes to stdout and stderr (e.g. to scan the whole log). */
  onOutput?: (chunk: string) => void;
}

/** A running service process. */
export interface ServiceProcess {
  readonly name: string;
  readonly pid: number | undefined;
  /** The last lines the process wrote to stdout and stderr (for failure messages). */
  output(): string;
  /** SIGTERM (or the given signal), then SIGKILL after `graceMs`; resolves when it exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
  /** Starts it again with the same options and waits until ready. */
  restart(): Promise<void>;
}

const SOURCE_ARGS = ["--conditions=switchboard-source", "--import", "tsx", "src/main.ts"];

/**
 * `REDIS_KEY_PREFIX` of every process one test file starts (unless it sets its own): processes of
 * one file share fan-out channels and rate-limit buckets; other test runs on the same Redis do
 * not, so buckets keyed by reused handles (fresh databases hand out the same ids) start full.
 */
const RUN_REDIS_PREFIX = `test-${randomBytes(4).toString("hex")}:`;
const MAX_OUTPUT_CHARS = 20_000;

/** A free port for a child to listen on, reserved among this machine's test processes (ports.ts). */
export { freePort } from "./ports.js";

/** Resolves true when an HTTP GET of `url` answers 2xx. */
export const httpReady = (url: string) => async (): Promise<boolean> => {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    return res.ok;
  } catch {
    return false;
  }
};

/** Resolves true when something accepts TCP connections on `port`. */
export const tcpReady =
  (port: number, host = "127.0.0.1") =>
  async (): Promise<boolean> =>
    new Promise((resolve) => {
      import("node:net")
        .then(({ connect }) => {
          const socket = connect({ port, host });
          socket.once("connect", () => {
            socket.destroy();
            resolve(true);
          });
          socket.once("error", () => resolve(false));
        })
        .catch(() => resolve(false));
    });

/**
 * Starts a service as a child process and waits until `ready()` holds. Throws with the process's
 * output when it exits early or does not become ready in time. Call `stop()` when done (tests:
 * in `onTestFinished` / `afterAll`).
 */
export async function startServiceProcess(opts: ServiceProcessOptions): Promise<ServiceProcess> {
  let child: ChildProcess | undefined;
  let output = "";
  const append = (chunk: Buffer) => {
    const text = chunk.toString();
    output = (output + text).slice(-MAX_OUTPUT_CHARS);
    opts.onOutput?.(text);
  };

  async function start(): Promise<void> {
    const proc = spawn(opts.command ?? process.execPath, opts.args ?? SOURCE_ARGS, {
      cwd: opts.cwd,
      env: { REDIS_KEY_PREFIX: RUN_REDIS_PREFIX, ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    proc.stdout?.on("data", append);
    proc.stderr?.on("data", append);
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `${opts.name} exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${output}`,
        );
      }
      if (await opts.ready()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill("SIGKILL");
    throw new Error(`${opts.name} was not ready within ${opts.readyTimeoutMs ?? 30_000} ms:\n${output}`);
  }

  async function stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return {
    name: opts.name,
    get pid() {
      return child?.pid;
    },
    output: () => output,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}
