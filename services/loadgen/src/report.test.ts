import { describe, expect, test } from "vitest";
import { cpuMicrosPerSend } from "./report.js";

describe("cpuMicrosPerSend", () => {
  test("is a process's CPU time per send in µs", () => {
    // 46.1 % of a core is 461,000 µs of CPU a second, over 4,210 sends a second.
    expect(cpuMicrosPerSend(46.1, 4210)).toBe(110);
    expect(cpuMicrosPerSend(150, 10_000)).toBe(150);
    expect(cpuMicrosPerSend(0, 2000)).toBe(0);
  });

  test("is null when nothing was sent", () => {
    expect(cpuMicrosPerSend(12.5, 0)).toBeNull();
  });
});
