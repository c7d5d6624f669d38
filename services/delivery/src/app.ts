import { createServer, type Server } from "node:http";
import type { ServerCredentials } from "@grpc/grpc-js";
import type { Fanout } from "@switchboard/fanout";
import { createGrpcServer, type GrpcServer } from "@switchboard/grpc";
import {
  DirectoryService,
  GroupService,
  KeyService,
  MessageService,
  ModerationService,
  ReportService,
  RequestService,
  SealedSenderService,
} from "@switchboard/proto";
import { sweepExpired, type Database } from "@switchboard/storage";
import { sql, type Kysely } from "kysely";
import type { Logger } from "pino";
import { createModeratorGate } from "./auth/moderator.js";
import { createAuthenticator } from "./auth/principal.js";
import type { DeliveryConfig } from "./config.js";
import { decodeConnectRequest, decodeSendMessageRequest } from "./rpc/connect-decode.js";
import { createMemoryRateLimiter, type RateLimiter } from "@switchboard/ratelimit";
import { createAckPipeline } from "./delivery/ack-pipeline.js";
import { ratePolicies } from "./delivery/rate-limits.js";
import { createSendPipeline } from "./delivery/send-pipeline.js";
import { createSubscriptionManager } from "./delivery/subscriptions.js";
import { translateError } from "./errors.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { createDirectoryService } from "./rpc/directory-service.js";
import { createGroupService } from "./rpc/group-service.js";
import { createKeyService } from "./rpc/key-service.js";
import { createMessageService } from "./rpc/message-service.js";
import { createModerationService } from "./rpc/moderation-service.js";
import { createReportService } from "./rpc/report-service.js";
import { createRequestService } from "./rpc/request-service.js";
import { createSealedSenderService } from "./rpc/sealed-sender-service.js";
import { createSealedSender } from "./delivery/sealed-send.js";
import { loadSafetyKeys, type SafetyKeys, type ServerKeyOverrides } from "./delivery/server-keys.js";
import type { Franker } from "./domain/franking.js";
import type { CertificateAuthority } from "./domain/sealed-sender.js";
import { AppError, Code } from "@switchboard/errors";

/** Configuration the app needs (a subset of DeliveryConfig, so tests can build it directly). */
export type AppConfig = Pick<
  DeliveryConfig,
  | "APP_TOKENS"
  | "MAX_CIPHERTEXT_BYTES"
  | "QUEUE_TTL_SECONDS"
  | "MAX_QUEUE_LENGTH"
  | "SEND_BATCH_MAX"
  | "SEND_LANES"
  | "ACK_BATCH_MAX"
  | "STREAM_POLL_MS"
  | "MAX_DEVICES"
  | "MAX_GROUP_MEMBERS"
> &
  Partial<
    Pick<
      DeliveryConfig,
      | "RATE_SEND_PER_SECOND"
      | "RATE_PAIR_PER_SECOND"
      | "RATE_PREKEYS_PER_MINUTE"
      | "RATE_REGISTER_PER_HOUR"
      | "RATE_NEW_CONVERSATIONS_PER_HOUR"
      | "RATE_FORWARDED_CHATS_BURST"
      | "RATE_FORWARDED_CHATS_PER_HOUR"
      | "MODERATOR_TOKEN"
      | "ACK_LINGER_MS"
      | "DATABASE_POOL_SIZE"
    >
  > &
  ServerKeyOverrides & {
    INSTANCE_ID: string;
  };

/** A built delivery service: serve it with `listen`, stop it with `close`. */
export interface DeliveryApp {
  readonly grpc: GrpcServer;
  /** The instance's Prometheus metrics (also served on `/metrics`). */
  readonly metrics: Metrics;
  /** Starts the gRPC server (and the metrics server when `metricsPort` is given). */
  listen(opts: {
    host: string;
    port: number;
    metricsPort?: number;
  }): Promise<{ port: number; metricsPort?: number }>;
  /** Graceful shutdown: stop taking work, finish in-flight sends and acks, close streams. */
  close(graceMs?: number): Promise<void>;
}

const SWEEP_INTERVAL_MS = 30_000;
const SEND_LOG_RETENTION_MS = 24 * 3600_000;

/**
 * Wires the delivery service from its dependencies. Reads no environment and opens no port until
 * `listen`; tests build it with a cloned database and a key-prefixed fan-out.
 */
export function buildApp(deps: {
  config: AppConfig;
  db: Kysely<Database>;
  fanout: Fanout;
  /** Token buckets shared by all instances (Redis); default: in memory (a single instance). */
  limiter?: RateLimiter;
  log: Logger;
  collectDefaultMetrics?: boolean;
  /** TLS of the gRPC listener (`serverTlsCredentials` from TLS_* files); default plaintext. */
  credentials?: ServerCredentials;
}): DeliveryApp {
  const { config, db, fanout, log } = deps;
  const limiter = deps.limiter ?? createMemoryRateLimiter();
  const policies = ratePolicies(config);
  const metrics = createMetrics({
    instance: config.INSTANCE_ID,
    collectDefaults: deps.collectDefaultMetrics,
    queueDepth: async () => {
      // The planner's live-tuple estimate: O(1), unlike count(*) over a large queue table.
      const r = await sql<{ depth: number }>`
        SELECT COALESCE(n_live_tup, 0)::bigint AS depth FROM pg_stat_user_tables WHERE relname = 'queued_messages'
      `.execute(db);
      return r.rows[0]?.depth ?? 0;
    },
  });
  const queueTtlMs = config.QUEUE_TTL_SECONDS * 1000;
  // Server secrets (franking, sealed sender) are loaded from the database in `listen`, before the
  // port opens; these forwarders let the handlers be wired now.
  let safetyKeys: SafetyKeys | undefined;
  const keys = (): SafetyKeys => {
    if (!safetyKeys) throw new AppError(Code.Unavailable, "STARTING", "the service is starting; retry");
    return safetyKeys;
  };
  const franker: Franker = {
    tag: (input) => keys().franker.tag(input),
    verify: (input, tag) => keys().franker.verify(input, tag),
  };
  const authority: CertificateAuthority = {
    get trustRoot() {
      return keys().authority.trustRoot;
    },
    issue: (...args) => keys().authority.issue(...args),
    validate: (...args) => keys().authority.validate(...args),
  };
  const auth = createAuthenticator({ db, appCredentials: config.APP_TOKENS });
  const sends = createSendPipeline({
    db,
    fanout,
    log: log.child({ component: "send-pipeline" }),
    metrics,
    lanes: config.SEND_LANES,
    batchMax: config.SEND_BATCH_MAX,
    queueTtlMs,
    maxQueueLength: config.MAX_QUEUE_LENGTH,
    limiter,
    policies,
    franker,
  });
  const acks = createAckPipeline({
    db,
    fanout,
    sends,
    log: log.child({ component: "ack-pipeline" }),
    metrics,
    batchMax: config.ACK_BATCH_MAX,
    queueTtlMs,
    lingerMs: config.ACK_LINGER_MS ?? 0,
  });
  const subscriptions = createSubscriptionManager({
    db,
    fanout,
    log: log.child({ component: "subscriptions" }),
    metrics,
    pollMs: config.STREAM_POLL_MS,
    // Half the pool for queue reads: sends and acks always find a connection soon.
    maxConcurrentReads: Math.max(1, Math.floor((config.DATABASE_POOL_SIZE ?? 10) / 2)),
    franker,
  });

  const grpc = createGrpcServer({
    log,
    maxReceiveMessageBytes: config.MAX_CIPHERTEXT_BYTES * 4 + 64 * 1024,
    translateError,
    credentials: deps.credentials,
  });
  grpc.add(
    DirectoryService,
    createDirectoryService({
      db,
      auth,
      fanout,
      subscriptions,
      maxDevices: config.MAX_DEVICES,
      limiter,
      policies,
      log,
    }),
  );
  grpc.add(KeyService, createKeyService({ db, auth, limiter, policies, log }));
  grpc.add(
    MessageService,
    createMessageService({
      db,
      auth,
      fanout,
      sends,
      acks,
      subscriptions,
      metrics,
      maxCiphertextBytes: config.MAX_CIPHERTEXT_BYTES,
      limiter,
      policies,
      log,
      sealed: createSealedSender({
        db,
        fanout,
        limiter,
        policies,
        metrics,
        log: log.child({ component: "sealed-send" }),
        franker,
        maxCiphertextBytes: config.MAX_CIPHERTEXT_BYTES,
        maxQueueLength: config.MAX_QUEUE_LENGTH,
        queueTtlMs,
      }),
    }),
    // Connect's send and ack frames, and unary SendMessage requests, decoded by hand
    // (connect-decode.ts): protobuf-es reflection was a fifth of this service's allocations.
    { decoders: { connect: decodeConnectRequest, sendMessage: decodeSendMessageRequest } },
  );
  grpc.add(ReportService, createReportService({ db, auth, franker, authority, log }));
  grpc.add(
    ModerationService,
    createModerationService({ db, gate: createModeratorGate({ token: config.MODERATOR_TOKEN, auth }) }),
  );
  grpc.add(SealedSenderService, createSealedSenderService({ db, auth, authority }));
  grpc.add(
    RequestService,
    createRequestService({ db, auth, fanout, maxGroupMembers: config.MAX_GROUP_MEMBERS, log, franker }),
  );
  grpc.add(GroupService, createGroupService({ db, auth, maxMembers: config.MAX_GROUP_MEMBERS }));

  let unBroadcast: (() => Promise<void>) | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let metricsServer: Server | undefined;

  async function sweep() {
    try {
      const r = await sweepExpired(db, Date.now(), 10_000, SEND_LOG_RETENTION_MS);
      metrics.expired.inc(r.expired);
      if (r.expired + r.payloads + r.sendLog > 0) log.info(r, "retention sweep");
    } catch (err) {
      log.warn({ err }, "retention sweep failed");
    }
  }

  return {
    grpc,
    metrics,
    async listen(opts) {
      unBroadcast = await fanout.subscribeBroadcast((payload) => {
        const [kind, accountId, deviceId] = Buffer.from(payload).toString().split(" ");
        if (kind === "device-removed" && accountId && deviceId)
          auth.forgetDevice(accountId, Number(deviceId));
      });
      safetyKeys ??= await loadSafetyKeys(db, config);
      const port = await grpc.listen(opts.host, opts.port);
      sweepTimer = setInterval(() => void sweep(), SWEEP_INTERVAL_MS);
      sweepTimer.unref();
      let metricsPort: number | undefined;
      if (opts.metricsPort !== undefined) {
        metricsServer = createServer((req, res) => {
          void (async () => {
            if (req.url === "/metrics") {
              res.setHeader("content-type", metrics.registry.contentType);
              res.end(await metrics.registry.metrics());
            } else if (req.url === "/healthz" || req.url === "/readyz") {
              try {
                await sql`SELECT 1`.execute(db);
                res.end("ok");
              } catch {
                res.statusCode = 503;
                res.end("database unavailable");
              }
            } else {
              res.statusCode = 404;
              res.end("not found");
            }
          })().catch(() => {
            res.statusCode = 500;
            res.end();
          });
        });
        const server = metricsServer;
        metricsPort = await new Promise<number>((resolve, reject) => {
          server.once("error", reject);
          server.listen(opts.metricsPort, opts.host, () => {
            const a = server.address();
            resolve(typeof a === "object" && a ? a.port : 0);
          });
        });
      }
      log.info({ port, metricsPort, instance: config.INSTANCE_ID }, "delivery service listening");
      return { port, metricsPort };
    },
    async close(graceMs = 10_000) {
      if (sweepTimer) clearInterval(sweepTimer);
      // Streams end first (clients reconnect elsewhere); accepted sends and acks still commit.
      await subscriptions.close();
      await acks.close(); // acks queue receipts through the send pipeline
      await sends.close();
      await grpc.close(graceMs);
      await unBroadcast?.();
      if (metricsServer) {
        const server = metricsServer;
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}
