// What one loopback round trip between two processes costs on this machine. Every message on the
// measured paths crosses processes several times (load generator → gateway → delivery service →
// PostgreSQL and Redis, and back), so this per-wake-up cost sets much of what a box can do at a
// given rate, and it differs between machines of one kind (docs/benchmarks.md, tenth round). The
// report records it next to the CPU model, so that figures from different machines can be compared.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";

/** A ping-pong over loopback TCP with a child process echoing 64-byte messages. */
export interface LoopbackProbe {
  roundTrips: number;
  /** Mean wall time of one round trip. */
  wallMicros: number;
  /** This process's CPU (user + system) per round trip: one write, one wake-up and one read. */
  cpuMicros: number;
  /** The system (kernel) part of cpuMicros. */
  systemMicros: number;
}

const ECHO_SERVER = `
const net = require("node:net");
const server = net.createServer((s) => { s.setNoDelay(true); s.on("data", (d) => s.write(d)); s.on("error", () => {}); });
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

/**
 * Measures `roundTrips` loopback round trips (after a tenth as many to warm up) against an echo
 * server in a child process, which exits when this function returns (or when this process does:
 * it watches its stdin).
 */
export async function probeLoopback(roundTrips = 3_000): Promise<LoopbackProbe> {
  const child = spawn(process.execPath, ["-e", ECHO_SERVER], { stdio: ["pipe", "pipe", "inherit"] });
  try {
    const [first] = (await Promise.race([
      once(child.stdout, "data"),
      once(child, "exit").then(() => {
        throw new Error("the loopback probe's echo server exited before listening");
      }),
    ])) as [Buffer];
    const port = Number(first.toString().trim());
    const socket = connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    await once(socket, "connect");
    const message = Buffer.alloc(64, 1);
    const pingPong = (n: number) =>
      new Promise<void>((resolve, reject) => {
        let received = 0;
        let left = n;
        const onData = (d: Buffer) => {
          received += d.length;
          while (received >= message.length) {
            received -= message.length;
            if (--left === 0) {
              socket.off("data", onData);
              socket.off("error", reject);
              resolve();
              return;
            }
            socket.write(message);
          }
        };
        socket.on("data", onData);
        socket.once("error", reject);
        socket.write(message);
      });
    await pingPong(Math.max(1, Math.round(roundTrips / 10)));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await pingPong(roundTrips);
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    socket.destroy();
    const per = (micros: number) => Math.round((micros / roundTrips) * 10) / 10;
    return {
      roundTrips,
      wallMicros: per(wall * 1000),
      cpuMicros: per(cpu.user + cpu.system),
      systemMicros: per(cpu.system),
    };
  } finally {
    child.stdin.end();
    child.kill();
  }
}
