// CPU and memory of watched processes, sampled from /proc while a run goes on.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";

/** A process to watch: a name for the report and its pid (its descendants are included). */
export interface WatchedProcess {
  name: string;
  pid: number;
}

/** One process (tree) at one sample. */
export interface ProcessSample {
  name: string;
  pid: number;
  /** The pids summed: the watched one and its live descendants. */
  pids: number[];
  /** CPU time used since the previous sample over wall time, in percent of one core. */
  cpuPercent: number;
  /** Resident set size summed over `pids` (shared pages count once per process), bytes. */
  rssBytes: number;
  alive: boolean;
}

/** One sample of every watched process and the machine. */
export interface Snapshot {
  /** Milliseconds since the sampler started. */
  tMs: number;
  processes: ProcessSample[];
  /** Busy time of all cores since the previous sample, percent of the whole machine (all cores). */
  machineCpuPercent: number;
  /** 1-minute load average. */
  loadAverage1m: number;
}

/** `/proc/<pid>/stat` fields the sampler uses. */
export interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime, clock ticks. */
  cpuTicks: number;
}

/** Parses `/proc/<pid>/stat` (the command name may contain spaces and parentheses). */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const pid = Number.parseInt(text, 10);
  // After ") ": state(3) ppid(4) ... utime(14) stime(15), counted from field 3.
  const rest = text.slice(close + 2).split(" ");
  const ppid = Number(rest[1]);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(pid) || !Number.isFinite(ppid) || !Number.isFinite(utime) || !Number.isFinite(stime))
    return undefined;
  return { pid, ppid, cpuTicks: utime + stime };
}

/** Reads `VmRSS` from `/proc/<pid>/status`, bytes (0 for kernel threads and zombies). */
export function parseVmRssBytes(text: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Busy and total jiffies of all cores, from the first line of `/proc/stat`. */
export function parseMachineCpu(text: string): { busy: number; total: number } {
  const line = text.slice(0, text.indexOf("\n"));
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

function clockTicksPerSecond(): number {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Samples watched processes; call `sample()` about once a second. */
export interface ProcSampler {
  sample(): Snapshot;
}

/**
 * Creates a sampler over `/proc` (Linux). Each watched pid is summed with its descendants, so
 * watching `pnpm start` or the PostgreSQL postmaster covers the node process or every backend. The
 * first sample only sets the baseline (CPU 0).
 */
export function createProcSampler(watch: readonly WatchedProcess[], procRoot = "/proc"): ProcSampler {
  const hz = clockTicksPerSecond();
  const started = performance.now();
  let lastAt = started;
  let lastTicks = new Map<number, number>();
  let lastMachine = parseMachineCpu(readText(`${procRoot}/stat`) ?? "cpu 0 0 0 0\n");
  let first = true;

  function scan(): Map<number, ProcStat> {
    const all = new Map<number, ProcStat>();
    let entries: string[];
    try {
      entries = readdirSync(procRoot);
    } catch {
      return all;
    }
    for (const e of entries) {
      if (!/^\d+$/.test(e)) continue;
      const text = readText(`${procRoot}/${e}/stat`);
      const st = text === undefined ? undefined : parseProcStat(text);
      if (st) all.set(st.pid, st);
    }
    return all;
  }

  return {
    sample() {
      const now = performance.now();
      const elapsedS = Math.max(1e-3, (now - lastAt) / 1000);
      const all = scan();
      const children = new Map<number, number[]>();
      for (const st of all.values()) {
        const list = children.get(st.ppid);
        if (list) list.push(st.pid);
        else children.set(st.ppid, [st.pid]);
      }
      const ticks = new Map<number, number>();
      const processes = watch.map((w): ProcessSample => {
        if (!all.has(w.pid))
          return { name: w.name, pid: w.pid, pids: [], cpuPercent: 0, rssBytes: 0, alive: false };
        const pids: number[] = [];
        const stack = [w.pid];
        while (stack.length > 0) {
          const p = stack.pop() as number;
          if (pids.includes(p)) continue;
          pids.push(p);
          for (const c of children.get(p) ?? []) stack.push(c);
        }
        let used = 0;
        let rss = 0;
        for (const p of pids) {
          const t = all.get(p)?.cpuTicks ?? 0;
          ticks.set(p, t);
          const before = lastTicks.get(p);
          used += before === undefined ? (first ? 0 : t) : Math.max(0, t - before);
          rss += parseVmRssBytes(readText(`${procRoot}/${p}/status`) ?? "");
        }
        return {
          name: w.name,
          pid: w.pid,
          pids: pids.sort((a, b) => a - b),
          cpuPercent: Math.round((used / hz / elapsedS) * 1000) / 10,
          rssBytes: rss,
          alive: true,
        };
      });
      const machine = parseMachineCpu(readText(`${procRoot}/stat`) ?? "cpu 0 0 0 0\n");
      const dTotal = machine.total - lastMachine.total;
      const machineCpuPercent =
        first || dTotal <= 0 ? 0 : Math.round(((machine.busy - lastMachine.busy) / dTotal) * 1000) / 10;
      lastMachine = machine;
      lastTicks = ticks;
      lastAt = now;
      first = false;
      return {
        tMs: Math.round(now - started),
        processes,
        machineCpuPercent,
        loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
      };
    },
  };
}
