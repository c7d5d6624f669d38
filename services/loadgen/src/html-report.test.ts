import { describe, expect, test } from "vitest";
import { lineChart } from "./html-report.js";

describe("lineChart", () => {
  test("draws an SVG with one path per series and escapes text", () => {
    const svg = lineChart({
      title: "a < b",
      yLabel: "ms",
      logY: true,
      series: [
        {
          name: "p50",
          color: "#000",
          points: [
            [1, 0.5],
            [2, 3],
            [3, 40],
          ],
        },
        {
          name: "p99",
          color: "#f00",
          points: [
            [1, 2],
            [2, 30],
            [3, 400],
          ],
        },
      ],
      bands: [{ from: 0, to: 1, label: "warm-up" }],
    });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain("a &lt; b");
    expect(svg).not.toMatch(/href|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });
});
