// Free TCP ports for test servers and child processes, unique among the test processes of this
// machine. Checking that a port is free (binding it once) is not enough when test suites run in
// parallel: two of them can check the same port before either child listens on it, and one child
// then fails with EADDRINUSE while its readiness probe is answered by the other suite's server
// (seen in CI: a gateway's registration answered 404 by another suite's gateway). So each port
// handed out is first reserved: a file named after it, created exclusively in a shared directory
// and holding the reserving process's pid, removed when that process exits. A reservation whose
// process is gone is taken over.
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Where reservations live (shared by every test process of the machine's user). */
const RESERVATIONS = join(tmpdir(), "switchboard-test-ports");
/** Where {@link freePort} starts looking (above the registered services most machines run). */
const LISTEN_PORTS_FROM = 20_000;

const reserved = new Set<number>();
let releaseOnExit = false;

const isAlive = (pid: number) => {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

function releaseAll(): void {
  for (const port of reserved) {
    try {
      unlinkSync(join(RESERVATIONS, String(port)));
    } catch {
      // Already gone.
    }
  }
  reserved.clear();
}

/**
 * Reserves `port` for this process. False when it is reserved already (by this process, or by
 * another one that is still running). Reservations last until the process exits.
 */
export function reservePort(port: number): boolean {
  if (reserved.has(port)) return false;
  mkdirSync(RESERVATIONS, { recursive: true });
  const file = join(RESERVATIONS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      reserved.add(port);
      if (!releaseOnExit) {
        releaseOnExit = true;
        process.once("exit", releaseAll);
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let holder = 0;
      try {
        holder = Number(readFileSync(file, "utf8"));
      } catch {
        // Released meanwhile: try again.
      }
      if (isAlive(holder)) return false;
      try {
        unlinkSync(file); // its process is gone
      } catch {
        // Another process took it over first; the next attempt finds out.
      }
    }
  }
  return false;
}

/** The first port of the kernel's ephemeral range (Linux), or 0 when unknown. */
function ephemeralLow(): number {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

/** Binds `port` (0: any) on 127.0.0.1 and releases it; resolves the port bound, or -1 when taken. */
function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" ? resolve(-1) : reject(err),
    );
    srv.listen(port, "127.0.0.1", () => {
      const address = srv.address();
      const bound = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(bound));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1 for a server or child process to listen on, reserved for this
 * process (see above). Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`,
 * 32768–60999 by default) where there is room: a port the OS hands out for `listen(0)` comes from
 * that range, and between its release and the child's `listen` any outgoing connection may take
 * it. With `alsoFree`, `port + alsoFree` is reserved and free too (a Redis Cluster bus port).
 * Without room below the range, the OS picks (unreserved).
 */
export async function freePort(options: { alsoFree?: number } = {}): Promise<number> {
  const extra = options.alsoFree ?? 0;
  const below = ephemeralLow() - extra;
  if (below - LISTEN_PORTS_FROM >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = LISTEN_PORTS_FROM + Math.floor(Math.random() * (below - LISTEN_PORTS_FROM));
      // A reserved port found taken stays reserved: something uses it.
      if (!reservePort(port) || (await listenOnce(port)) !== port) continue;
      if (extra === 0) return port;
      if (reservePort(port + extra) && (await listenOnce(port + extra)) === port + extra) return port;
    }
  }
  if (extra !== 0) throw new Error(`no free pair of ports ${extra} apart below ${ephemeralLow()}`);
  return listenOnce(0);
}
