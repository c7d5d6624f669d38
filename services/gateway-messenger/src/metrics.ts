// Prometheus metrics of the gateway, served on GET /metrics. Every gateway exports the same names
// with its own `app` label, so one query covers all three front doors.
import type { DeliveryLink } from "@switchboard/delivery-link";
import { EnvelopeType } from "@switchboard/proto";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

const APP = "messenger";

/** The gateway's metrics, in their own registry (one per app instance). */
export interface GatewayMetrics {
  readonly registry: Registry;
  /** Counts one message the delivery service queued for a send through this gateway. */
  sent(): void;
  /** Counts one message the delivery service delivered to a device connected to this gateway. */
  delivered(): void;
}

/**
 * Creates the registry: Node's default metrics (unless `collectDefaults` is false), the live
 * connection gauge (sampled from `connections` on scrape) and the sent/delivered counters.
 */
export function createMetrics(opts: {
  connections: () => number;
  collectDefaults?: boolean;
}): GatewayMetrics {
  const registry = new Registry();
  if (opts.collectDefaults !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new Gauge({
    name: "switchboard_gateway_connections",
    help: "Live device connections (WebSockets, event streams, chat streams) on this gateway instance.",
    labelNames: ["app"] as const,
    registers,
    collect() {
      this.set({ app: APP }, opts.connections());
    },
  });
  const sent = new Counter({
    name: "switchboard_gateway_messages_sent_total",
    help: "Messages sent through this gateway (direct and group sends) that the delivery service queued.",
    labelNames: ["app"] as const,
    registers,
  });
  const delivered = new Counter({
    name: "switchboard_gateway_messages_delivered_total",
    help: "Messages the delivery service delivered to devices connected to this gateway (server receipts excluded; a redelivery counts again).",
    labelNames: ["app"] as const,
    registers,
  });
  // Exported at 0 from the start, so rate() works before the first message.
  sent.inc({ app: APP }, 0);
  delivered.inc({ app: APP }, 0);
  return {
    registry,
    sent: () => sent.inc({ app: APP }),
    delivered: () => delivered.inc({ app: APP }),
  };
}

/**
 * Wraps `link` so that sends the delivery service queued and envelopes delivered to subscribed
 * devices are counted. Everything else passes through; the caller still closes the original link.
 */
export function instrumentLink(link: DeliveryLink, metrics: GatewayMetrics): DeliveryLink {
  return {
    directory: link.directory,
    keys: link.keys,
    groups: link.groups,
    messages: link.messages,
    async send(req) {
      const r = await link.send(req);
      if (r.result.case === "sent") metrics.sent();
      return r;
    },
    async sendGroup(req) {
      const r = await link.sendGroup(req);
      if (r.result.case === "sent") metrics.sent();
      return r;
    },
    subscribe(device, listener, opts) {
      return link.subscribe(
        device,
        {
          onEnvelope: (envelope) => {
            if (envelope.type !== EnvelopeType.SERVER_DELIVERY_RECEIPT) metrics.delivered();
            listener.onEnvelope(envelope);
          },
          onQueueEmpty: () => listener.onQueueEmpty(),
          onDisplaced: () => listener.onDisplaced(),
          onError: (err) => listener.onError?.(err),
        },
        opts,
      );
    },
    get subscribedDevices() {
      return link.subscribedDevices;
    },
    close: () => link.close(),
  };
}
