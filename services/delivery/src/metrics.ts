import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The delivery service's Prometheus metrics, in their own registry (one per app instance). */
export function createMetrics(opts: {
  instance: string;
  collectDefaults?: boolean;
  queueDepth?: () => Promise<number>;
}) {
  const registry = new Registry();
  registry.setDefaultLabels({ instance: opts.instance });
  if (opts.collectDefaults !== false) collectDefaultMetrics({ register: registry });
  const r = [registry];
  return {
    registry,
    sends: new Counter({
      name: "switchboard_sends_total",
      help: "Send requests by kind (direct, group, ephemeral, receipt) and outcome (sent, duplicate, mismatched, stale, not_found, error).",
      labelNames: ["kind", "outcome"] as const,
      registers: r,
    }),
    queued: new Counter({
      name: "switchboard_messages_queued_total",
      help: "Rows committed to device queues, by source and destination app.",
      labelNames: ["source_app", "destination_app"] as const,
      registers: r,
    }),
    queueReads: new Counter({
      name: "switchboard_queue_reads_total",
      help: "Queue reads from PostgreSQL by device streams (backlog drains, missed or large wake-ups, polls).",
      registers: r,
    }),
    deliveries: new Counter({
      name: "switchboard_deliveries_total",
      help: "Envelopes pushed to device streams.",
      registers: r,
    }),
    acks: new Counter({
      name: "switchboard_acks_total",
      help: "Queue rows removed by acknowledgement.",
      registers: r,
    }),
    receipts: new Counter({
      name: "switchboard_delivery_receipts_total",
      help: "Server delivery receipts queued.",
      registers: r,
    }),
    expired: new Counter({
      name: "switchboard_messages_expired_total",
      help: "Queue rows removed by retention.",
      registers: r,
    }),
    ephemeralDropped: new Counter({
      name: "switchboard_ephemeral_dropped_total",
      help: "Ephemeral messages dropped (late or window full).",
      registers: r,
    }),
    streams: new Gauge({
      name: "switchboard_device_streams",
      help: "Device subscriptions held by this instance.",
      registers: r,
    }),
    commitBatchSize: new Histogram({
      name: "switchboard_send_batch_size",
      help: "Sends per group-commit transaction.",
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers: r,
    }),
    ackBatchSize: new Histogram({
      name: "switchboard_ack_batch_size",
      help: "Message ids per ack DELETE.",
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
      registers: r,
    }),
    commitSeconds: new Histogram({
      name: "switchboard_send_commit_seconds",
      help: "Stage latency: a send waiting for and running its group commit.",
      buckets: LATENCY_BUCKETS_S,
      registers: r,
    }),
    pushSeconds: new Histogram({
      name: "switchboard_commit_to_push_seconds",
      help: "Stage latency: commit to push onto the recipient's stream (server clock).",
      buckets: LATENCY_BUCKETS_S,
      registers: r,
    }),
    endToEndSeconds: new Histogram({
      name: "switchboard_commit_to_ack_seconds",
      help: "End-to-end latency: commit to the recipient device's acknowledgement (server clock).",
      buckets: LATENCY_BUCKETS_S,
      registers: r,
    }),
    queueDepth: new Gauge({
      name: "switchboard_queue_depth",
      help: "Messages queued across all devices (PostgreSQL live-tuple estimate, sampled on scrape).",
      registers: r,
      async collect() {
        if (!opts.queueDepth) return;
        try {
          this.set(await opts.queueDepth());
        } catch {
          // Keep the last value; the scrape still succeeds.
        }
      },
    }),
  };
}

/** The metrics object handed to delivery components. */
export type Metrics = ReturnType<typeof createMetrics>;
