import { describe, expect, test } from "vitest";
import { createProcSampler, parseMachineCpu, parseProcStat, parseVmRssBytes } from "./proc-sampler.js";

describe("proc parsing", () => {
  test("reads pid, ppid and CPU ticks even with spaces in the command name", () => {
    const stat = "1234 (node (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 900 0 0";
    expect(parseProcStat(stat)).toEqual({ pid: 1234, ppid: 1, cpuTicks: 300 });
  });

  test("reads VmRSS", () => {
    expect(parseVmRssBytes("Name:\tnode\nVmRSS:\t  2048 kB\n")).toBe(2048 * 1024);
    expect(parseVmRssBytes("Name:\tkthreadd\n")).toBe(0);
  });

  test("reads machine busy time", () => {
    expect(parseMachineCpu("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2\n")).toEqual({ busy: 15, total: 100 });
  });
});

describe("createProcSampler", () => {
  test("samples this process and reports a vanished one as gone", () => {
    const sampler = createProcSampler([
      { name: "me", pid: process.pid },
      { name: "gone", pid: 2 ** 22 + 17 },
    ]);
    sampler.sample();
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
    expect(x).toBeGreaterThan(0);
    const s = sampler.sample();
    const me = s.processes[0];
    expect(me?.alive).toBe(true);
    expect(me?.pids).toContain(process.pid);
    expect(me?.rssBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(s.processes[1]).toMatchObject({ name: "gone", alive: false });
  });
});
