// The report of a run: one JSON document (also rendered as HTML by html-report.ts).
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { renderHtmlReport } from "./html-report.js";
import type { LoopbackProbe } from "./machine-probe.js";
import type { LoadgenOptions } from "./options.js";
import type { SignalSetupStats } from "./signal-payloads.js";
import type { LatencySummary } from "./stats.js";
import type { AppName } from "./topology.js";
import type { VerificationReport } from "./verifier.js";

/** Which part of the run a time-series point belongs to. */
export type Phase = "warmup" | "measure" | "drain";

/** One interval (normally one second) of the run. */
export interface TimelinePoint {
  /** End of the interval, seconds since traffic started. */
  tSeconds: number;
  phase: Phase;
  /** Per second over the interval: sends issued, Sent results, first deliveries, receipts. */
  issuedPerSecond: number;
  sentPerSecond: number;
  deliveredPerSecond: number;
  receiptsPerSecond: number;
  /** Errors in the interval (not per second). */
  errors: number;
  /** At the end of the interval: sends outstanding, and sends due but not yet issued (open loop). */
  inflight: number;
  backlog: number;
  /** End-to-end latency of the deliveries received in the interval. */
  latencyMs: { count: number; p50: number; p99: number; max: number };
  machineCpuPercent: number;
  processes: Record<string, { cpuPercent: number; rssMB: number }>;
}

/** CPU and memory of one watched process (tree) over the measured window. */
export interface ProcessReport {
  name: string;
  pid: number;
  /** Every pid seen in the tree during the run. */
  pids: number[];
  /** Percent of one core: mean and highest interval. */
  cpuPercent: { mean: number; max: number };
  /**
   * CPU time per confirmed send over the measured window, in µs (mean CPU % of one core × 10,000 /
   * sends per second): the process's cost of a message, comparable between rates and machines.
   * Null when nothing was sent.
   */
  cpuMicrosPerSend: number | null;
  rssMB: { mean: number; max: number; last: number };
}

/**
 * A process's CPU time per send in µs, from its mean CPU (percent of one core) over a window that
 * confirmed `sendsPerSecond` sends a second; null when it confirmed none.
 */
export function cpuMicrosPerSend(meanCpuPercent: number, sendsPerSecond: number): number | null {
  return sendsPerSecond > 0 ? Math.round((meanCpuPercent * 10_000) / sendsPerSecond) : null;
}

/** An error count by where it happened, code and reason. */
export interface ErrorCount {
  source: "send" | "subscription" | "drain";
  code: string;
  reason: string;
  count: number;
}

/** Everything a run measured. Format documented in docs/loadtest.md. */
export interface LoadReport {
  tool: "@switchboard/loadgen";
  reportVersion: 1;
  name: string;
  startedAt: string;
  finishedAt: string;
  /** Verification passed and no error occurred. */
  passed: boolean;
  exitCode: 0 | 1;
  machine: {
    hostname: string;
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    node: string;
    loadAverageAtStart: number[];
    loadAverageAtEnd: number[];
    /** A loopback TCP ping-pong with another process, measured before setup (machine-probe.ts). */
    loopback: LoopbackProbe;
  };
  /** The options, without app tokens. */
  options: Omit<LoadgenOptions, "appTokens"> & { apps: AppName[] };
  setup: {
    accounts: number;
    devices: number;
    accountsPerApp: Partial<Record<AppName, number>>;
    /** One-to-one conversations (ordered sender account → recipient account). */
    conversations: number;
    groups: number;
    groupMemberAccounts: number;
    /** Registration was skipped: the population came from --population. */
    reusedPopulation: boolean;
    registrationSeconds: number;
    devicesRegisteredPerSecond: number;
    groupSeconds: number;
    subscribeSeconds: number;
    /** Mean content bytes sent per one-to-one copy and per group send (header included). */
    meanPayloadBytes: { direct: number; group: number };
    signal?: SignalSetupStats;
  };
  traffic: {
    loop: "open" | "closed";
    /** Open loop: the offered rate. */
    offeredPerSecond: number | null;
    /** The run was interrupted (SIGINT) before the end of the measured window. */
    interrupted: boolean;
    /** Seconds of the measured window (shorter than --duration when interrupted). */
    measuredSeconds: number;
    /** Sent results, first deliveries (per recipient device) and delivery receipts per second in the measured window. */
    sendsPerSecond: number;
    deliveriesPerSecond: number;
    receiptsPerSecond: number;
    totals: {
      issued: number;
      groupSends: number;
      confirmed: number;
      failed: number;
      deliveries: number;
      receipts: number;
    };
    maxInflight: number;
    /** Open loop: most sends due but held back by --inflight at once. */
    maxBacklog: number;
    /** Sends retried after a transient failure with the same client message id (gateway mode). */
    retries: number;
    /** Device subscriptions re-opened after a transient failure (gateway mode). */
    reconnects: number;
    /** How late sends went out after their intended time (the load generator's own lag). */
    issueLagMs: LatencySummary;
  };
  latency: {
    /** Intended send time to first delivery at each recipient device, sends intended in the measured window. */
    endToEnd: LatencySummary;
    /** Intended send time to the Sent result (committed), same sends. */
    send: LatencySummary;
  };
  verification: VerificationReport;
  errors: { total: number; byReason: ErrorCount[] };
  processes: ProcessReport[];
  machineCpuPercent: { mean: number; max: number };
  timeline: TimelinePoint[];
}

/** Writes `report.json` and `report.html` into `dir` (created if needed); returns their paths. */
export async function writeReport(report: LoadReport, dir: string): Promise<{ json: string; html: string }> {
  await mkdir(dir, { recursive: true });
  const json = join(dir, "report.json");
  const html = join(dir, "report.html");
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(html, renderHtmlReport(report));
  return { json, html };
}

/** A few lines summarising a report, for the terminal. */
export function summarize(report: LoadReport): string {
  const t = report.traffic;
  const e = report.latency.endToEnd;
  const v = report.verification;
  const lines = [
    `${report.passed ? "PASSED" : "FAILED"}  ${report.name}  (${report.options.mode}, ${t.loop} loop${
      t.offeredPerSecond !== null
        ? ` at ${t.offeredPerSecond}/s`
        : `, ${report.options.inflight} in flight until ${report.options.until}`
    }, ${report.setup.devices} devices, ${t.measuredSeconds}s measured${
      report.options.serverReceipts ? "" : ", no server receipts"
    }${t.interrupted ? ", interrupted" : ""})`,
    `throughput  sends ${t.sendsPerSecond}/s  deliveries ${t.deliveriesPerSecond}/s  receipts ${t.receiptsPerSecond}/s`,
    `end-to-end  p50 ${e.p50Ms} ms  p90 ${e.p90Ms} ms  p99 ${e.p99Ms} ms  p99.9 ${e.p999Ms} ms  max ${e.maxMs} ms  (${e.count} deliveries)`,
    `verify      sent ${v.sends.confirmed}/${v.sends.issued}  delivered ${v.delivered}/${v.expectedDeliveries}  lost ${v.lost}  duplicates ${v.duplicates}  reordered ${v.reordered}  misrouted ${v.misrouted}  unrecognized ${v.unrecognized}${
      report.options.serverReceipts ? "" : `  unwanted receipts ${v.unwantedReceipts}`
    }  (redeliveries ${v.redeliveries})`,
    `errors      ${report.errors.total}${report.errors.byReason
      .map((x) => `  ${x.source}:${x.code}/${x.reason}=${x.count}`)
      .join("")}`,
  ];
  for (const p of report.processes)
    lines.push(
      `process     ${p.name} (pid ${p.pid}${p.pids.length > 1 ? ` +${p.pids.length - 1}` : ""})  cpu ${p.cpuPercent.mean}% mean ${p.cpuPercent.max}% max${
        p.cpuMicrosPerSend === null ? "" : ` (${p.cpuMicrosPerSend} µs per send)`
      }  rss ${p.rssMB.max} MB max`,
    );
  // Null for every process or for none: they share the run's sends per second.
  const perSend = report.processes.flatMap((p) => (p.cpuMicrosPerSend === null ? [] : [p.cpuMicrosPerSend]));
  if (perSend.length > 1)
    lines.push(
      `cpu/send    ${perSend.reduce((a, b) => a + b, 0)} µs in all ${perSend.length} processes above`,
    );
  lines.push(
    `machine     cpu ${report.machineCpuPercent.mean}% mean of ${report.machine.cpus} cores, load ${report.machine.loadAverageAtEnd.join(" ")}`,
    `            loopback round trip to another process ${report.machine.loopback.wallMicros} µs, ${report.machine.loopback.cpuMicros} µs of CPU (${report.machine.loopback.systemMicros} kernel)`,
  );
  return lines.join("\n");
}
