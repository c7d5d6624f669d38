import { describe, expect, test } from "vitest";
import type { LoadReport } from "./report.js";
import {
  idleMeasurementOf,
  judge,
  measurementOf,
  medianOf,
  renderVerdicts,
  renderVerdictsMarkdown,
  TARGETS,
  type Measurement,
} from "./targets.js";

/** The parts of a load-generator report the targets read. */
function report(over: {
  sendsPerSecond: number;
  p99Ms: number;
  offered?: number;
  passed?: boolean;
  lost?: number;
  count?: number;
}): LoadReport {
  const partial = {
    passed: over.passed ?? true,
    options: { mode: "delivery-stream", inflight: 2000 },
    setup: { devices: 1000 },
    traffic: {
      sendsPerSecond: over.sendsPerSecond,
      offeredPerSecond: over.offered ?? null,
      measuredSeconds: 20,
    },
    latency: { endToEnd: { count: over.count ?? 1000, p50Ms: 5.2, p99Ms: over.p99Ms } },
    verification: { lost: over.lost ?? 0, duplicates: 0, reordered: 0 },
    errors: { total: 0 },
  };
  return partial as unknown as LoadReport;
}

const m = (id: Measurement["id"], value: number | null, verified: boolean | null = true): Measurement => ({
  id,
  value,
  verified,
  detail: "d",
});

describe("judge", () => {
  test("throughput targets are met at or above the goal", () => {
    const [at, below] = judge([m("streaming", 10_000), m("unary", 4_999)]);
    expect(at?.met).toBe(true);
    expect(below?.met).toBe(false);
  });

  test("latency and memory targets are met strictly under the goal", () => {
    const [under, at, kib] = judge([
      m("latency-2000", 19.9),
      m("latency-half", 50),
      m("idle-whatsapp", 19.6),
    ]);
    expect(under?.met).toBe(true);
    expect(at?.met).toBe(false);
    // 20 KB is 19.53 KiB: 19.6 KiB per connection is over it.
    expect(kib?.met).toBe(false);
    expect(judge([m("idle-messenger", 11.4, null)])[0]?.met).toBe(true);
  });

  test("a fast run that did not verify, or gave no figure, is not met", () => {
    const [unverified, missing] = judge([m("streaming", 20_000, false), m("whatsapp", null)]);
    expect(unverified?.met).toBe(false);
    expect(missing?.met).toBe(false);
  });

  test("an unjudged run keeps its figures without verdicts", () => {
    const [v] = judge([m("streaming", 20_000)], { judged: false });
    expect(v?.judged).toBe(false);
    expect(renderVerdicts(judge([m("streaming", 20_000)], { judged: false }))).toContain("not judged");
  });
});

describe("measurementOf", () => {
  test("throughput targets take sends per second, latency targets the end-to-end p99", () => {
    const r = report({ sendsPerSecond: 8061, p99Ms: 35.9, offered: 2000 });
    expect(measurementOf("streaming", r).value).toBe(8061);
    expect(measurementOf("latency-2000", r, "/r/report.json")).toMatchObject({
      value: 35.9,
      verified: true,
      report: "/r/report.json",
    });
    expect(measurementOf("latency-2000", r).detail).toContain("open loop at 2000/s");
  });

  test("a run that lost messages is not verified; a run without deliveries has no p99", () => {
    expect(
      measurementOf("streaming", report({ sendsPerSecond: 9000, p99Ms: 9, passed: false, lost: 3 })),
    ).toMatchObject({ verified: false });
    expect(measurementOf("latency-2000", report({ sendsPerSecond: 0, p99Ms: 0, count: 0 })).value).toBeNull();
  });
});

describe("medianOf", () => {
  const run = (value: number | null, verified: boolean, report: string): Measurement => ({
    id: "streaming",
    value,
    verified,
    detail: `run ${report}`,
    report,
  });

  test("one run is itself", () => {
    const only = run(6850, true, "a");
    expect(medianOf([only])).toBe(only);
  });

  test("takes the median run's figure, detail and report, and lists every figure", () => {
    const m = medianOf([run(6323, true, "a"), run(6850, true, "b"), run(4099, true, "c")]);
    expect(m).toMatchObject({ value: 6323, verified: true, report: "a" });
    expect(m.detail).toBe("median of 3 runs (6323 / 6850 / 4099); the median run: run a");
    // An even count takes the lower middle.
    expect(
      medianOf([run(10, true, "a"), run(40, true, "b"), run(20, true, "c"), run(30, true, "d")]).value,
    ).toBe(20);
  });

  test("is verified only if every run was, and leaves runs without a figure out of the median", () => {
    const m = medianOf([run(9000, true, "a"), run(null, false, "b"), run(8000, true, "c")]);
    expect(m.value).toBe(8000);
    expect(m.verified).toBe(false);
    expect(m.detail).toContain("(9000 / — / 8000)");
    expect(medianOf([run(null, false, "a"), run(null, false, "b")])).toMatchObject({
      value: null,
      verified: false,
    });
    expect(() => medianOf([])).toThrow(/at least one run/);
  });
});

describe("idleMeasurementOf", () => {
  test("reads each gateway bench's own field from its last JSON object", () => {
    const logs = 'inserting 20000 devices...\n{\n  "connections": 1,\n  "perConnectionKiB": 99\n}\nready 0\n';
    expect(
      idleMeasurementOf(
        "idle-whatsapp",
        `${logs}{\n  "connections": 20000,\n  "streamsPerTcpConnection": 100,\n  "perConnectionKiB": 17.6\n}\n`,
      ),
    ).toMatchObject({
      value: 17.6,
      detail: "20000 idle connections, 100 streams per HTTP/2 connection, 17.6 KiB RSS each",
    });
    expect(
      idleMeasurementOf("idle-messenger", '{\n  "connections": 19744,\n  "rssPerConnectionKiB": 11.4\n}')
        .value,
    ).toBe(11.4);
    expect(
      idleMeasurementOf(
        "idle-instagram",
        'x\n{\n  "connections": 20000,\n  "rss_kib_per_connection": 8.5\n}\n',
      ),
    ).toMatchObject({ value: 8.5, verified: null, detail: "20000 idle connections, 8.5 KiB RSS each" });
  });

  test("skips one-line log records printed after the result", () => {
    const out =
      '{\n  "connections": 20000,\n  "perConnectionKiB": 16.9\n}\n' +
      '{"level":40,"msg":"link closed","err":{"message":"driver has already been destroyed"}}\n';
    expect(idleMeasurementOf("idle-whatsapp", out).value).toBe(16.9);
  });

  test("says what the bench printed when it gave no figure", () => {
    const r = idleMeasurementOf("idle-messenger", "Error: connect ECONNREFUSED 127.0.0.1:5432\n");
    expect(r.value).toBeNull();
    expect(r.detail).toContain("ECONNREFUSED");
    expect(() => idleMeasurementOf("streaming", "{}")).toThrow(/not an idle-connection target/);
  });
});

describe("rendering", () => {
  const verdicts = judge([
    m("streaming", 11_436),
    m("latency-2000", 24.87),
    m("instagram", 2_100, false),
    m("idle-whatsapp", null),
  ]);

  test("the terminal table shows figure, goal and verdict per target", () => {
    const lines = renderVerdicts(verdicts).split("\n");
    expect(lines[0]).toMatch(/^target\s+measured\s+goal\s+verdict$/);
    expect(lines[2]).toMatch(/streaming API.*11,436\/s\s+≥ 10,000\/s \(aim 15,000\/s\)\s+met$/);
    expect(lines[3]).toMatch(/2,000 sends\/s offered\s+24\.9 ms\s+< 20 ms\s+missed$/);
    expect(lines[4]).toMatch(/Instagram-style.*not verified$/);
    expect(lines[5]).toMatch(/WhatsApp-style gateway, memory each\s+—\s+< 20 KB\s+no figure$/);
  });

  test("the Markdown table has a row per target and escapes pipes", () => {
    const md = renderVerdictsMarkdown(judge([{ ...m("unary", 5_010), detail: "a | b" }]));
    expect(md.split("\n")).toHaveLength(3);
    expect(md).toContain(`| ${TARGETS.unary.title} | 5,010/s | ≥ 5,000/s | met | a \\| b |`);
  });
});
