import { describe, expect, test } from "vitest";
import { probeLoopback } from "./machine-probe.js";

describe("probeLoopback", () => {
  test("times round trips to a child echo server", async () => {
    const probe = await probeLoopback(200);
    expect(probe.roundTrips).toBe(200);
    // A round trip crosses two processes: it cannot take no time, and takes far less than 50 ms.
    expect(probe.wallMicros).toBeGreaterThan(0);
    expect(probe.wallMicros).toBeLessThan(50_000);
    expect(probe.cpuMicros).toBeGreaterThan(0);
    expect(probe.systemMicros).toBeLessThanOrEqual(probe.cpuMicros);
  });
});
