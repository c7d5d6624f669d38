// Prometheus metrics shared by every gateway: the same names with the gateway's own `app` label,
// so one query covers all front doors. HTTP gateways serve the registry on their own port; a
// gRPC gateway can use `startMetricsServer` for /metrics and /healthz.
import { createServer, type Server } from "node:http";
import type { DeliveryLink, DeviceListener } from "@switchboard/delivery-link";
import { EnvelopeType, type Envelope } from "@switchboard/proto";
import type { Logger } from "pino";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

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
  /** The `app` label: whatsapp, messenger, instagram or a provider id. */
  app: string;
  connections: () => number;
  collectDefaults?: boolean;
}): GatewayMetrics {
  const APP = opts.app;
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
 * A device listener that counts delivered envelopes. A class rather than an object of closures:
 * every connected device holds one for as long as it is connected.
 */
class CountingListener implements DeviceListener {
  constructor(
    private readonly listener: DeviceListener,
    private readonly metrics: GatewayMetrics,
  ) {}

  onEnvelope(envelope: Envelope): void {
    if (envelope.type !== EnvelopeType.SERVER_DELIVERY_RECEIPT) this.metrics.delivered();
    this.listener.onEnvelope(envelope);
  }

  onQueueEmpty(): void {
    this.listener.onQueueEmpty();
  }

  onDisplaced(): void {
    this.listener.onDisplaced();
  }

  onError(err: Parameters<NonNullable<DeviceListener["onError"]>>[0]): void {
    this.listener.onError?.(err);
  }
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
    requests: link.requests,
    reports: link.reports,
    sealedSender: link.sealedSender,
    async sendSealed(req, accessKey) {
      const r = await link.sendSealed(req, accessKey);
      if (r.result.case === "sent") metrics.sent();
      return r;
    },
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
      return link.subscribe(device, new CountingListener(listener, metrics), opts);
    },
    get subscribedDevices() {
      return link.subscribedDevices;
    },
    close: () => link.close(),
  };
}

/** A running metrics server. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (the registry) and `GET /healthz` (200 "ok" while `healthy()` resolves
 * true, else 503) on `host:port` (0 picks a free port).
 */
export async function startMetricsServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  healthy: () => Promise<boolean>;
  log: Logger;
}): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      if (req.method === "GET" && req.url === "/metrics") {
        res.setHeader("content-type", opts.registry.contentType);
        res.end(await opts.registry.metrics());
      } else if (req.method === "GET" && req.url === "/healthz") {
        const ok = await opts.healthy();
        res.statusCode = ok ? 200 : 503;
        res.end(ok ? "ok" : "unavailable");
      } else {
        res.statusCode = 404;
        res.end("not found");
      }
    })().catch((err: unknown) => {
      opts.log.warn({ err }, "metrics request failed");
      res.statusCode = 500;
      res.end();
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : 0);
    });
  });
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
