import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { describe, expect, test } from "vitest";
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
