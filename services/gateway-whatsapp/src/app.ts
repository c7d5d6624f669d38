import type { DeliveryLink } from "@switchboard/delivery-link";
import type { ServerCredentials } from "@grpc/grpc-js";
import { createGrpcServer, type GrpcServer } from "@switchboard/grpc";
import { whatsapp } from "@switchboard/proto";
import { sql, type Kysely } from "kysely";
import type { Logger } from "pino";
import { startAdminServer, type AdminServer } from "./codes/admin-server.js";
import { createDevCodeSender, type CodeSender, type DevCodeSender } from "./codes/code-sender.js";
import { createDirectory } from "./directory.js";
import { DEFAULT_LIMITS, type GatewayLimits } from "./domain/limits.js";
import {
  createMetrics,
  instrumentLink,
  startMetricsServer,
  type GatewayMetrics,
  type MetricsServer,
} from "@switchboard/gateway-metrics";
import { createChatHub } from "./rpc/chat.js";
import { decodeChatRequest } from "./rpc/chat-codec.js";
import { createWhatsAppService } from "./rpc/whatsapp-service.js";
import type { WaDatabase } from "./storage/schema.js";

/** A built gateway: serve it with `listen`, stop it with `close`. */
export interface GatewayApp {
  readonly grpc: GrpcServer;
  /** Devices with an open Chat stream on this instance. */
  readonly connections: number;
  /** The instance's Prometheus metrics (served on `/metrics` of the metrics port). */
  readonly metrics: GatewayMetrics;
  /**
   * Starts the gRPC server; the metrics server (`/metrics`, `/healthz`) on `host:metricsPort`
   * when `metricsPort` is given; and the dev admin endpoint on 127.0.0.1:`adminPort` when
   * `adminPort` is given and the code sender is the development one.
   */
  listen(opts: {
    host: string;
    port: number;
    metricsPort?: number;
    adminPort?: number;
  }): Promise<{ port: number; metricsPort?: number; adminPort?: number }>;
  /** Ends chat streams, finishes unary calls within `graceMs`, stops the metrics and admin servers. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Wires the gateway from its dependencies. Reads no environment and opens no port until
 * `listen`; the caller owns `db` and `link` and closes them after `close()`. Without a
 * `codeSender` the development sender is used (codes are logged, and readable through the admin
 * endpoint when it is started).
 */
export function buildApp(deps: {
  db: Kysely<WaDatabase>;
  link: DeliveryLink;
  log: Logger;
  codeSender?: CodeSender;
  limits?: Partial<GatewayLimits>;
  now?: () => number;
  collectDefaultMetrics?: boolean;
  /** TLS of the gRPC listener (`serverTlsCredentials` from TLS_* files); default plaintext. */
  credentials?: ServerCredentials;
}): GatewayApp {
  const { db, log } = deps;
  const limits: GatewayLimits = { ...DEFAULT_LIMITS, ...deps.limits };
  const now = deps.now ?? Date.now;
  const codeSender = deps.codeSender ?? createDevCodeSender(log.child({ component: "code-sender" }));
  // `chat` (created below) is read only on scrape.
  const metrics = createMetrics({
    app: "whatsapp",
    connections: () => chat.connections,
    collectDefaults: deps.collectDefaultMetrics,
  });
  const link = instrumentLink(deps.link, metrics);
  const directory = createDirectory(link);
  const chat = createChatHub({ db, link, directory, limits, log });
  const grpc = createGrpcServer({ log, credentials: deps.credentials });
  grpc.add(
    whatsapp.WhatsAppService,
    {
      ...createWhatsAppService({ db, link, directory, codeSender, limits, log, now }),
      chat: chat.handler,
    },
    // Chat's send and ack frames decoded by hand (chat-codec.ts): protobuf-es reflection was
    // ~12 % of this gateway's busy time.
    { decoders: { chat: decodeChatRequest } },
  );
  let admin: AdminServer | undefined;
  let metricsServer: MetricsServer | undefined;
  let serving = false;

  /** Healthy: the gRPC server is serving and the database answers. */
  async function isHealthy(): Promise<boolean> {
    if (!serving) return false;
    try {
      await sql`SELECT 1`.execute(db);
      return true;
    } catch {
      return false;
    }
  }

  return {
    grpc,
    get connections() {
      return chat.connections;
    },
    metrics,
    async listen(opts) {
      const port = await grpc.listen(opts.host, opts.port);
      serving = true;
      if (opts.metricsPort !== undefined) {
        metricsServer = await startMetricsServer({
          host: opts.host,
          port: opts.metricsPort,
          registry: metrics.registry,
          healthy: isHealthy,
          log,
        });
      }
      if (opts.adminPort !== undefined && isDevSender(codeSender)) {
        admin = await startAdminServer({ port: opts.adminPort, codes: codeSender, log });
      }
      log.info(
        { port, metricsPort: metricsServer?.port, adminPort: admin?.port },
        "whatsapp gateway listening",
      );
      return {
        port,
        ...(metricsServer ? { metricsPort: metricsServer.port } : {}),
        ...(admin ? { adminPort: admin.port } : {}),
      };
    },
    async close(graceMs = 10_000) {
      serving = false;
      await grpc.close(graceMs);
      await metricsServer?.close();
      await admin?.close();
    },
  };
}

function isDevSender(sender: CodeSender): sender is DevCodeSender {
  return typeof (sender as Partial<DevCodeSender>).lastCode === "function";
}
