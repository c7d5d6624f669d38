import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, onTestFinished, test } from "vitest";
import { reservePort } from "./ports.js";
import { freePort } from "./service-process.js";

const ephemeralLow = Number(
  readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0],
);

describe("freePort", () => {
  test("hands out ports below the kernel's ephemeral range that a server can listen on", async () => {
    for (let i = 0; i < 10; i++) {
      const port = await freePort();
      expect(port).toBeGreaterThan(0);
      expect(port).toBeLessThan(ephemeralLow);
      const srv = createServer();
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(port, "127.0.0.1", resolve);
      });
      await new Promise((resolve) => srv.close(resolve));
    }
  });
});

describe("port reservations", () => {
  const dir = join(tmpdir(), "switchboard-test-ports");

  test("a port handed out is reserved for this process: never handed out twice", async () => {
    const ports = new Set<number>();
    for (let i = 0; i < 200; i++) ports.add(await freePort());
    expect(ports.size).toBe(200);
    const [first] = ports;
    expect(readFileSync(join(dir, String(first)), "utf8")).toBe(String(process.pid));
    expect(reservePort(first as number)).toBe(false);
  });

  test("another live process's reservation holds; a dead process's is taken over", async () => {
    // Ports above the ones freePort hands out, so the test cannot collide with it.
    const live = 61_000 + (process.pid % 1000);
    const dead = live + 1000 < 65_536 ? live + 1000 : live - 1000;
    mkdirSync(dir, { recursive: true });
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    onTestFinished(() => {
      child.kill();
    });
    writeFileSync(join(dir, String(live)), String(child.pid));
    expect(reservePort(live)).toBe(false);
    // A pid that ran and exited.
    const exited = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    await new Promise((resolve) => exited.once("exit", resolve));
    writeFileSync(join(dir, String(dead)), String(exited.pid));
    expect(reservePort(dead)).toBe(true);
    expect(readFileSync(join(dir, String(dead)), "utf8")).toBe(String(process.pid));
    rmSync(join(dir, String(live)), { force: true });
  });

  test("reservations are removed when the process exits", async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          "--conditions=switchboard-source",
          "--import",
          "tsx",
          "-e",
          `import("./src/ports.ts").then(async (m) => { const p = await m.freePort(); console.log(p); })`,
        ],
        { cwd: fileURLToPath(new URL("..", import.meta.url)), stdio: ["ignore", "pipe", "inherit"] },
      );
      let text = "";
      child.stdout.on("data", (d: Buffer) => (text += d.toString()));
      child.once("error", reject);
      child.once("exit", (code) => (code === 0 ? resolve(text.trim()) : reject(new Error(`exit ${code}`))));
    });
    const port = Number(out);
    expect(port).toBeGreaterThan(0);
    expect(existsSync(join(dir, String(port)))).toBe(false);
  });
});
