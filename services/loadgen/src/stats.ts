// Latency histograms (HDR, microsecond resolution) and their summaries.
import hdr from "hdr-histogram-js";

/** Percentiles of a latency distribution, in milliseconds. */
export interface LatencySummary {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

const HIGHEST_US = 3_600_000_000; // one hour

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * An HDR histogram of latencies: recorded in microseconds with 3 significant digits (0.1 % value
 * precision) from 1 µs to one hour; longer values are recorded as one hour.
 */
export class LatencyHistogram {
  private readonly h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    bitBucketSize: 32,
    autoResize: false,
  });

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    const us = Math.round(ms * 1000);
    this.h.recordValue(us < 1 ? 1 : us > HIGHEST_US ? HIGHEST_US : us);
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** The value at `percentile` (0..100), ms. */
  percentileMs(percentile: number): number {
    return this.h.totalCount === 0 ? 0 : this.h.getValueAtPercentile(percentile) / 1000;
  }

  /** Adds every value of `other` to this one. */
  add(other: LatencyHistogram): void {
    this.h.add(other.h);
  }

  reset(): void {
    this.h.reset();
  }

  summary(): LatencySummary {
    const h = this.h;
    if (h.totalCount === 0)
      return { count: 0, minMs: 0, meanMs: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0 };
    return {
      count: h.totalCount,
      minMs: round3(h.minNonZeroValue / 1000),
      meanMs: round3(h.mean / 1000),
      p50Ms: round3(h.getValueAtPercentile(50) / 1000),
      p90Ms: round3(h.getValueAtPercentile(90) / 1000),
      p99Ms: round3(h.getValueAtPercentile(99) / 1000),
      p999Ms: round3(h.getValueAtPercentile(99.9) / 1000),
      maxMs: round3(h.maxValue / 1000),
    };
  }
}
