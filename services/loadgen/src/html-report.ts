// A self-contained HTML rendering of a report: tables and inline SVG charts drawn here (no
// scripts, stylesheets, fonts or images from anywhere else).
import type { LoadReport, TimelinePoint } from "./report.js";
import type { LatencySummary } from "./stats.js";

const esc = (s: unknown) =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );

/** One line of a chart. */
export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
  dashed?: boolean;
}

/** Options of {@link lineChart}. */
export interface ChartOptions {
  title: string;
  yLabel: string;
  series: Series[];
  /** Logarithmic y axis (values <= 0 are clipped to the smallest decade shown). */
  logY?: boolean;
  /** Shaded x ranges, e.g. warm-up and drain. */
  bands?: Array<{ from: number; to: number; label: string }>;
  width?: number;
  height?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function niceStep(range: number, ticks: number): number {
  const raw = range / Math.max(1, ticks);
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const n = raw / mag;
  return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
}

const fmt = (v: number) =>
  Math.abs(v) >= 1e6
    ? `${+(v / 1e6).toFixed(1)}M`
    : Math.abs(v) >= 1e4
      ? `${+(v / 1e3).toFixed(1)}k`
      : `${+v.toPrecision(4)}`;

/** Draws a line chart as an SVG element (x: seconds). */
export function lineChart(opts: ChartOptions): string {
  const W = opts.width ?? 900;
  const H = opts.height ?? 280;
  const m = { l: 64, r: 16, t: 28, b: 62 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = opts.series.flatMap((s) => s.points);
  const xMin = Math.min(0, ...all.map((p) => p[0]));
  const xMax = Math.max(xMin + 1, ...all.map((p) => p[0]));
  const ys = all.map((p) => p[1]).filter((y) => Number.isFinite(y));
  let yMin = 0;
  let yMax = Math.max(1, ...ys);
  let yTicks: number[];
  let yOf: (y: number) => number;
  if (opts.logY) {
    const positive = ys.filter((y) => y > 0);
    yMin = 10 ** Math.floor(Math.log10(Math.min(...positive, 1)));
    yMax = 10 ** Math.ceil(Math.log10(Math.max(...positive, yMin * 10)));
    const lo = Math.log10(yMin);
    const hi = Math.log10(yMax);
    yOf = (y) => m.t + ph - ((Math.log10(Math.max(y, yMin)) - lo) / (hi - lo)) * ph;
    yTicks = [];
    for (let e = lo; e <= hi; e++) yTicks.push(10 ** e);
  } else {
    const step = niceStep(yMax, 5);
    yMax = Math.ceil(yMax / step) * step;
    yOf = (y) => m.t + ph - ((y - yMin) / (yMax - yMin)) * ph;
    yTicks = [];
    for (let y = 0; y <= yMax + step / 2; y += step) yTicks.push(y);
  }
  const xOf = (x: number) => m.l + ((x - xMin) / (xMax - xMin)) * pw;
  const xStep = niceStep(xMax - xMin, 10);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(opts.title)}">`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.l}" y="18" font-size="14" font-weight="bold">${esc(opts.title)}</text>`,
  );
  for (const b of opts.bands ?? []) {
    const x1 = xOf(Math.max(xMin, b.from));
    const x2 = xOf(Math.min(xMax, b.to));
    if (x2 <= x1) continue;
    parts.push(
      `<rect x="${x1.toFixed(1)}" y="${m.t}" width="${(x2 - x1).toFixed(1)}" height="${ph}" fill="#eee"/>`,
      `<text x="${((x1 + x2) / 2).toFixed(1)}" y="${m.t + 12}" font-size="10" fill="#888" text-anchor="middle">${esc(b.label)}</text>`,
    );
  }
  for (const y of yTicks) {
    const py = yOf(y).toFixed(1);
    parts.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${py}" y2="${py}" stroke="#ddd"/>`,
      `<text x="${m.l - 6}" y="${py}" font-size="10" text-anchor="end" dominant-baseline="middle">${fmt(y)}</text>`,
    );
  }
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep) {
    const px = xOf(x).toFixed(1);
    parts.push(
      `<line x1="${px}" x2="${px}" y1="${m.t + ph}" y2="${m.t + ph + 4}" stroke="#333"/>`,
      `<text x="${px}" y="${m.t + ph + 16}" font-size="10" text-anchor="middle">${fmt(x)}</text>`,
    );
  }
  parts.push(
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    `<text x="${m.l + pw / 2}" y="${m.t + ph + 30}" font-size="11" text-anchor="middle">seconds since traffic started</text>`,
    `<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(opts.yLabel)}</text>`,
  );
  opts.series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]) && (!opts.logY || p[1] > 0));
    if (pts.length > 0) {
      const d = pts
        .map((p, j) => `${j === 0 ? "M" : "L"}${xOf(p[0]).toFixed(1)},${yOf(p[1]).toFixed(1)}`)
        .join("");
      parts.push(
        `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5 3"' : ""}/>`,
      );
    }
    const lx = m.l + 8 + i * 150;
    parts.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${m.t + ph + 48}" y2="${m.t + ph + 48}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ""}/>`,
      `<text x="${lx + 22}" y="${m.t + ph + 48}" font-size="10" dominant-baseline="middle">${esc(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

function table(head: string[], rows: unknown[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

const kv = (rows: Array<[string, unknown]>) =>
  table(["", ""], rows).replace("<thead><tr><th></th><th></th></tr></thead>", "");

const latencyRow = (name: string, l: LatencySummary) => [
  name,
  l.count,
  l.p50Ms,
  l.p90Ms,
  l.p99Ms,
  l.p999Ms,
  l.maxMs,
  l.meanMs,
];

function bands(tl: TimelinePoint[], warmup: number, measureEnd: number) {
  const end = tl.at(-1)?.tSeconds ?? measureEnd;
  return [
    { from: 0, to: warmup, label: "warm-up" },
    { from: measureEnd, to: end, label: "drain" },
  ];
}

/** Renders the report as one self-contained HTML page. */
export function renderHtmlReport(r: LoadReport): string {
  const tl = r.timeline;
  const warm = r.options.warmupSeconds;
  const end = warm + r.options.durationSeconds;
  const b = bands(tl, warm, end);
  const at = (f: (p: TimelinePoint) => number) => tl.map((p): [number, number] => [p.tSeconds, f(p)]);
  const throughput = lineChart({
    title: "Throughput",
    yLabel: "per second",
    bands: b,
    series: [
      { name: "sends issued", color: "#999", points: at((p) => p.issuedPerSecond), dashed: true },
      { name: "sends Sent", color: PALETTE[0]!, points: at((p) => p.sentPerSecond) },
      { name: "deliveries", color: PALETTE[2]!, points: at((p) => p.deliveredPerSecond) },
      { name: "receipts", color: PALETTE[4]!, points: at((p) => p.receiptsPerSecond), dashed: true },
    ],
  });
  const latency = lineChart({
    title: "End-to-end latency (per interval)",
    yLabel: "milliseconds (log)",
    logY: true,
    bands: b,
    series: [
      { name: "p50", color: PALETTE[0]!, points: at((p) => p.latencyMs.p50) },
      { name: "p99", color: PALETTE[1]!, points: at((p) => p.latencyMs.p99) },
      { name: "max", color: "#bbb", points: at((p) => p.latencyMs.max), dashed: true },
    ],
  });
  const names = r.processes.map((p) => p.name);
  const cpu = lineChart({
    title: "CPU",
    yLabel: "% of one core (machine: % of all cores)",
    bands: b,
    series: [
      ...names.map((n, i) => ({
        name: n,
        color: PALETTE[(i + 3) % PALETTE.length]!,
        points: at((p) => p.processes[n]?.cpuPercent ?? 0),
      })),
      { name: "machine", color: "#333", points: at((p) => p.machineCpuPercent), dashed: true },
    ],
  });
  const rss = lineChart({
    title: "Resident memory",
    yLabel: "MB",
    height: 220,
    bands: b,
    series: names.map((n, i) => ({
      name: n,
      color: PALETTE[(i + 3) % PALETTE.length]!,
      points: at((p) => p.processes[n]?.rssMB ?? 0),
    })),
  });
  const v = r.verification;
  const t = r.traffic;
  const status = r.passed
    ? `<p class="ok">PASSED: nothing lost, duplicated or reordered; no errors.</p>`
    : `<p class="bad">FAILED: ${esc(
        [
          v.lost && `${v.lost} lost`,
          v.duplicates && `${v.duplicates} duplicated`,
          v.reordered && `${v.reordered} reordered`,
          v.idCollisions && `${v.idCollisions} id collisions`,
          v.misrouted && `${v.misrouted} misrouted`,
          v.unrecognized && `${v.unrecognized} unrecognized`,
          v.unwantedReceipts && `${v.unwantedReceipts} unwanted server receipts`,
          r.errors.total && `${r.errors.total} errors`,
        ]
          .filter(Boolean)
          .join(", "),
      )}.</p>`;
  const { watch, ...shownOptions } = r.options;
  const json = JSON.stringify(r).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(r.name)} — Switchboard load test</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 960px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; } .ok { color: #176b1c; font-weight: bold; } .bad { color: #b00020; font-weight: bold; }
svg { display: block; margin: 12px 0; max-width: 100%; height: auto; } .muted { color: #666; }
</style>
</head>
<body>
<h1>${esc(r.name)}</h1>
<p class="muted">${esc(r.options.mode)}, ${esc(t.loop)} loop${
    t.offeredPerSecond !== null
      ? ` at ${esc(t.offeredPerSecond)} sends/s offered`
      : `, ${esc(r.options.inflight)} sends in flight until ${esc(r.options.until)}`
  }, ${esc(r.setup.devices)} devices, ${esc(r.options.sizeBytes)}-byte ${esc(r.options.payload)} payloads, ${esc(
    r.options.warmupSeconds,
  )} s warm-up + ${esc(r.options.durationSeconds)} s measured. ${esc(r.startedAt)} on ${esc(r.machine.hostname)} (${esc(
    r.machine.cpus,
  )} × ${esc(r.machine.cpuModel)}).</p>
${status}
<h2>Throughput (measured window)</h2>
${kv([
  ["sends Sent per second", t.sendsPerSecond],
  ["deliveries per second (per recipient device)", t.deliveriesPerSecond],
  ["delivery receipts per second", t.receiptsPerSecond],
  ["offered sends per second", t.offeredPerSecond ?? "closed loop"],
  [
    "sends issued / Sent / failed (whole run)",
    `${t.totals.issued} / ${t.totals.confirmed} / ${t.totals.failed}`,
  ],
  ["group sends", t.totals.groupSends],
  ["most sends in flight", t.maxInflight],
  ["most sends held back (open loop)", t.maxBacklog],
  ["issue lag p50 / p99 / max, ms", `${t.issueLagMs.p50Ms} / ${t.issueLagMs.p99Ms} / ${t.issueLagMs.maxMs}`],
])}
${throughput}
<h2>Latency (sends intended in the measured window)</h2>
${table(
  ["", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "mean ms"],
  [
    latencyRow("end to end (intended send → delivered)", r.latency.endToEnd),
    latencyRow("send (intended send → Sent)", r.latency.send),
  ],
)}
${latency}
<h2>Verification</h2>
${kv([
  ["deliveries owed / delivered", `${v.expectedDeliveries} / ${v.delivered}`],
  ["lost", v.lost],
  ["duplicates (after de-duplication by envelope id)", v.duplicates],
  ["reordered", v.reordered],
  ["envelope id collisions", v.idCollisions],
  ["misrouted", v.misrouted],
  ["unrecognized", v.unrecognized],
  ["server receipts for sends that asked for none", v.unwantedReceipts],
  ["redeliveries (absorbed by de-duplication)", v.redeliveries],
  ["deliveries of unconfirmed sends", v.unconfirmedDeliveries],
  ["leftovers of earlier runs (reused population)", v.earlierRunDeliveries],
  ["sends without a result", v.sends.unresolved],
])}
<h2>Errors</h2>
${
  r.errors.total === 0
    ? "<p>None.</p>"
    : table(
        ["where", "code", "reason", "count"],
        r.errors.byReason.map((e) => [e.source, e.code, e.reason, e.count]),
      )
}
<h2>Processes (measured window)</h2>
${table(
  ["process", "pids", "CPU mean %", "CPU max %", "CPU µs per send", "RSS mean MB", "RSS max MB"],
  r.processes.map((p) => [
    p.name,
    p.pids.join(" "),
    p.cpuPercent.mean,
    p.cpuPercent.max,
    p.cpuMicrosPerSend ?? "–",
    p.rssMB.mean,
    p.rssMB.max,
  ]),
)}
<p class="muted">CPU in percent of one core; machine CPU ${esc(r.machineCpuPercent.mean)} % mean, ${esc(
    r.machineCpuPercent.max,
  )} % max of all ${esc(r.machine.cpus)} cores; load average ${esc(r.machine.loadAverageAtStart.join(" "))} at start, ${esc(
    r.machine.loadAverageAtEnd.join(" "),
  )} at end. A watched process's RSS sums its descendants. A loopback round trip to another process took ${esc(
    r.machine.loopback.wallMicros,
  )} µs and ${esc(r.machine.loopback.cpuMicros)} µs of CPU (${esc(r.machine.loopback.systemMicros)} in the kernel) on this machine before the run: the cost of a wake-up, which differs between machines (docs/benchmarks.md).</p>
${cpu}
${rss}
<h2>Setup</h2>
${kv([
  ["accounts / devices", `${r.setup.accounts} / ${r.setup.devices}`],
  [
    "accounts per app",
    Object.entries(r.setup.accountsPerApp)
      .map(([a, n]) => `${a} ${n}`)
      .join(", "),
  ],
  ["groups / member accounts", `${r.setup.groups} / ${r.setup.groupMemberAccounts}`],
  [
    "registration",
    r.setup.reusedPopulation
      ? "reused a saved population"
      : `${r.setup.registrationSeconds} s (${r.setup.devicesRegisteredPerSecond} devices/s)`,
  ],
  ["group creation / subscriptions", `${r.setup.groupSeconds} s / ${r.setup.subscribeSeconds} s`],
  [
    "mean payload bytes, one-to-one copy / group",
    `${r.setup.meanPayloadBytes.direct} / ${r.setup.meanPayloadBytes.group}`,
  ],
  ...(r.setup.signal
    ? ([
        ["signal sessions / sender keys", `${r.setup.signal.sessions} / ${r.setup.signal.senderKeys}`],
        ["ciphertexts pre-encrypted", `${r.setup.signal.ciphertexts} in ${r.setup.signal.setupSeconds} s`],
      ] as Array<[string, unknown]>)
    : []),
])}
<h2>Options</h2>
${kv(Object.entries(shownOptions).map(([k, x]) => [k, typeof x === "object" ? JSON.stringify(x) : x]))}
${kv([["watch", watch.map((w) => `${w.name}=${w.pid}`).join(", ") || "—"]])}
<script type="application/json" id="report">${json}</script>
</body>
</html>
`;
}
