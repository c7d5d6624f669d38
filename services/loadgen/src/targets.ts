// Issue 7's performance targets and a verdict for each, from load-generator reports and the
// gateways' idle-connection benches. `pnpm bench:targets` (bench/targets.ts) runs the measurements;
// this module only judges and prints them, so it is tested without a running system.
import type { LoadReport } from "./report.js";

/** One target of a one-machine run: a figure, the goal it must reach, and which way is better. */
export interface Target {
  title: string;
  unit: "sends/s" | "ms" | "KiB";
  /** At least this (higher is better) or under this (lower is better). */
  goal: number;
  better: "higher" | "lower";
  /** A second, more ambitious figure the issue names ("aiming for"), shown but not required. */
  aim?: number;
}

export const TARGET_IDS = [
  "streaming",
  "unary",
  "latency-2000",
  "latency-half",
  "whatsapp",
  "messenger",
  "instagram",
  "idle-whatsapp",
  "idle-messenger",
  "idle-instagram",
] as const;
export type TargetId = (typeof TARGET_IDS)[number];

/** 20 KB (decimal, as the issue writes it) in KiB, the unit the idle benches report. */
const IDLE_GOAL_KIB = 20_000 / 1024;

export const TARGETS: Readonly<Record<TargetId, Target>> = {
  streaming: {
    title: "durable delivery, streaming API (1,000 devices)",
    unit: "sends/s",
    goal: 10_000,
    better: "higher",
    aim: 15_000,
  },
  unary: {
    title: "durable delivery, unary SendMessage",
    unit: "sends/s",
    goal: 5_000,
    better: "higher",
  },
  "latency-2000": {
    title: "p99 end-to-end at 2,000 sends/s offered",
    unit: "ms",
    goal: 20,
    better: "lower",
  },
  "latency-half": {
    title: "p99 end-to-end at half the streaming maximum",
    unit: "ms",
    goal: 50,
    better: "lower",
  },
  whatsapp: {
    title: "full path, WhatsApp-style gateway (gRPC Chat streams)",
    unit: "sends/s",
    goal: 5_000,
    better: "higher",
    aim: 10_000,
  },
  messenger: {
    title: "full path, Messenger-style gateway (REST + WebSocket)",
    unit: "sends/s",
    goal: 5_000,
    better: "higher",
    aim: 10_000,
  },
  instagram: {
    title: "full path, Instagram-style gateway (REST + SSE)",
    unit: "sends/s",
    goal: 5_000,
    better: "higher",
    aim: 10_000,
  },
  "idle-whatsapp": {
    title: "idle devices on one WhatsApp-style gateway, memory each",
    unit: "KiB",
    goal: IDLE_GOAL_KIB,
    better: "lower",
  },
  "idle-messenger": {
    title: "idle devices on one Messenger-style gateway, memory each",
    unit: "KiB",
    goal: IDLE_GOAL_KIB,
    better: "lower",
  },
  "idle-instagram": {
    title: "idle devices on one Instagram-style gateway, memory each",
    unit: "KiB",
    goal: IDLE_GOAL_KIB,
    better: "lower",
  },
};

/** What one measurement gave. `value` null: it did not produce the figure (see `detail`). */
export interface Measurement {
  id: TargetId;
  value: number | null;
  /** The load generator's verification (lost, duplicated, reordered all 0, no error); null: not a load run. */
  verified: boolean | null;
  /** One line on how it was measured, or why it failed. */
  detail: string;
  /** Where the full report is, when there is one. */
  report?: string;
}

/** A measurement judged against its target. */
export interface Verdict extends Measurement {
  target: Target;
  /** The figure reaches the goal and the run verified (a fast run that lost messages is not met). */
  met: boolean;
  /** False when the run's configuration is not the targets' (a --quick run): `met` means nothing. */
  judged: boolean;
}

/** Judges each measurement against its target; `judged: false` keeps the figures but no verdicts. */
export function judge(
  measurements: readonly Measurement[],
  opts: { judged: boolean } = { judged: true },
): Verdict[] {
  return measurements.map((m) => {
    const target = TARGETS[m.id];
    const reached =
      m.value !== null && (target.better === "higher" ? m.value >= target.goal : m.value < target.goal);
    return { ...m, target, met: reached && m.verified !== false, judged: opts.judged };
  });
}

/** The verdict column: a failed or unverified run first, then met or missed (when judged). */
function verdictText(v: Verdict): string {
  if (v.value === null) return "no figure";
  if (v.verified === false) return "not verified";
  if (!v.judged) return "not judged";
  return v.met ? "met" : "missed";
}

/** The figure a load-generator report gives for a throughput or latency target. */
export function measurementOf(id: TargetId, report: LoadReport, reportPath?: string): Measurement {
  const target = TARGETS[id];
  const t = report.traffic;
  const e = report.latency.endToEnd;
  const v = report.verification;
  const value = target.unit === "ms" ? (e.count > 0 ? e.p99Ms : null) : t.sendsPerSecond;
  const loop =
    t.offeredPerSecond !== null
      ? `open loop at ${t.offeredPerSecond}/s`
      : `closed loop, ${report.options.inflight} in flight`;
  const detail =
    `${report.options.mode}, ${report.setup.devices} devices, ${loop}, ${t.measuredSeconds} s: ` +
    `${t.sendsPerSecond} sends/s, p50 ${e.p50Ms} / p99 ${e.p99Ms} ms; lost ${v.lost}, ` +
    `duplicated ${v.duplicates}, reordered ${v.reordered}, errors ${report.errors.total}`;
  return { id, value, verified: report.passed, detail, ...(reportPath ? { report: reportPath } : {}) };
}

/**
 * Repeated runs of one target as one measurement: the median figure (the lower middle of an even
 * count; runs without a figure are left out), verified only if every run verified, with the
 * median run's detail and report and every run's figure. The machine's speed drifts between runs
 * (docs/benchmarks.md): a median of three says more than one run.
 */
export function medianOf(runs: readonly Measurement[]): Measurement {
  const first = runs[0];
  if (first === undefined) throw new Error("medianOf needs at least one run");
  if (runs.length === 1) return first;
  const withFigure = runs.filter((r) => r.value !== null);
  const sorted = [...withFigure].sort((a, b) => (a.value as number) - (b.value as number));
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  const verified = runs.some((r) => r.verified === false) ? false : first.verified;
  const figures = runs.map((r) => (r.value === null ? "—" : String(r.value))).join(" / ");
  if (median === undefined)
    return { id: first.id, value: null, verified, detail: `no run gave a figure: ${first.detail}` };
  return {
    ...median,
    verified,
    detail: `median of ${runs.length} runs (${figures}); the median run: ${median.detail}`,
  };
}

/**
 * The per-connection memory an idle-connection bench printed (its last pretty-printed JSON object). The three
 * benches name the figure differently; each is the gateway's RSS growth divided by its connections.
 */
export function idleMeasurementOf(id: TargetId, output: string): Measurement {
  const key: Partial<Record<TargetId, string>> = {
    "idle-whatsapp": "perConnectionKiB",
    "idle-messenger": "rssPerConnectionKiB",
    "idle-instagram": "rss_kib_per_connection",
  };
  const field = key[id];
  if (field === undefined) throw new Error(`${id} is not an idle-connection target`);
  // The result is the last pretty-printed object ("{" and "}" alone on their lines); log lines
  // (one-line JSON) may come before or after it.
  const lines = output.split("\n");
  let parsed: Record<string, unknown> | undefined;
  const open = lines.lastIndexOf("{");
  const close = open >= 0 ? lines.indexOf("}", open) : -1;
  if (close > open) {
    try {
      parsed = JSON.parse(lines.slice(open, close + 1).join("\n")) as Record<string, unknown>;
    } catch {
      parsed = undefined;
    }
  }
  const value = parsed?.[field];
  const connections = parsed?.connections;
  if (typeof value !== "number" || typeof connections !== "number")
    return { id, value: null, verified: null, detail: `the bench printed no ${field}: ${tail(output)}` };
  // The WhatsApp-style bench multiplexes devices' streams over HTTP/2 connections (docs/benchmarks.md).
  const perConnection = parsed?.streamsPerTcpConnection;
  const streams = typeof perConnection === "number" ? `, ${perConnection} streams per HTTP/2 connection` : "";
  return {
    id,
    value,
    verified: null,
    detail: `${connections} idle connections${streams}, ${value} KiB RSS each`,
  };
}

const tail = (s: string) => s.trim().split("\n").slice(-3).join(" / ").slice(0, 300);

const formatValue = (t: Target, v: number | null): string =>
  v === null
    ? "—"
    : t.unit === "sends/s"
      ? `${Math.round(v).toLocaleString("en-US")}/s`
      : `${Math.round(v * 10) / 10} ${t.unit}`;

const formatGoal = (t: Target): string =>
  t.unit === "KiB"
    ? "< 20 KB"
    : t.better === "higher"
      ? `≥ ${formatValue(t, t.goal)}${t.aim ? ` (aim ${formatValue(t, t.aim)})` : ""}`
      : `< ${t.goal} ms`;

/** A fixed-width table of the verdicts, for the terminal. */
export function renderVerdicts(verdicts: readonly Verdict[]): string {
  const rows = verdicts.map((v) => [
    v.target.title,
    formatValue(v.target, v.value),
    formatGoal(v.target),
    verdictText(v),
  ]);
  const head = ["target", "measured", "goal", "verdict"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** The same as Markdown (summary.md), with each measurement's detail. */
export function renderVerdictsMarkdown(verdicts: readonly Verdict[]): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    "| target | measured | goal | verdict | how |",
    "| --- | --- | --- | --- | --- |",
    ...verdicts.map(
      (v) =>
        `| ${esc(v.target.title)} | ${formatValue(v.target, v.value)} | ${formatGoal(v.target)} | ${verdictText(
          v,
        )} | ${esc(v.detail)} |`,
    ),
  ].join("\n");
}
