import swagger from "@fastify/swagger";
import type { DeliveryLink } from "@switchboard/delivery-link";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { sql, type Kysely } from "kysely";
import type { Logger } from "pino";
import type { GatewayConfig } from "./config.js";
import { createDirectory } from "./directory.js";
import { createAuthenticator } from "./http/auth.js";
import type { RouteContext } from "./http/context.js";
import { registerProblemHandler } from "./http/problem.js";
import { createRequestIds, transportErrorOptions } from "@switchboard/gateway-http";
import { accountRoutes } from "./http/routes/accounts.js";
import { directRoutes } from "./http/routes/direct.js";
import { eventRoutes } from "./http/routes/events.js";
import { keyRoutes } from "./http/routes/keys.js";
import { blockRoutes, pendingRoutes } from "./http/routes/pending.js";
import { privacyRoutes } from "./http/routes/privacy.js";
import { reportRoutes } from "./http/routes/reports.js";
import { sealedRoutes } from "./http/routes/sealed.js";
import { ajvOptions, problemResponses, sharedSchemas } from "./http/schemas.js";
import { createEventHub, type EventHub } from "./live/event-hub.js";
import { createMetrics, instrumentLink, type GatewayMetrics } from "@switchboard/gateway-metrics";
import { sweepExpiredRequests } from "./storage/request-repository.js";
import { createThreadPeers } from "./storage/thread-peers.js";
import type { IgDatabase } from "./storage/schema.js";

/** Configuration the app needs (a subset of GatewayConfig, so tests can build it directly). */
export type AppConfig = Pick<GatewayConfig, "MAX_BODY_BYTES">;

/** Options for tests: shorter timers. */
export interface AppTuning {
  keepAliveMs?: number;
  releasePollMs?: number;
}

/** A built gateway: serve it with `listen`, stop it with `close`. */
export interface GatewayApp {
  readonly http: FastifyInstance;
  readonly hub: EventHub;
  /** The instance's Prometheus metrics (also served on `GET /metrics`). */
  readonly metrics: GatewayMetrics;
  /** Starts the HTTP server; resolves to the bound port. */
  listen(opts: { host: string; port: number }): Promise<number>;
  /** Ends event streams (clients reconnect elsewhere), then stops the server. Does not close `link` or `db`. */
  close(): Promise<void>;
}

const VERSION = "0.1.0";
const REQUEST_RETENTION_MS = 30 * 24 * 3600_000;
const SWEEP_INTERVAL_MS = 10 * 60_000;

/**
 * Wires the gateway from its dependencies. Reads no environment and opens no port until
 * `listen`; tests build it over a cloned database and a link to a test delivery instance.
 */
export function buildApp(deps: {
  config: AppConfig;
  db: Kysely<IgDatabase>;
  link: DeliveryLink;
  log: Logger;
  tuning?: AppTuning;
  collectDefaultMetrics?: boolean;
  /**
   * Serve HTTPS instead of HTTP (PEM contents of TLS_CERT_FILE / TLS_KEY_FILE); with `ca`
   * (TLS_CLIENT_CA_FILE) clients must present a certificate it signed. Default: plaintext HTTP.
   */
  https?: { cert: Buffer; key: Buffer; ca?: Buffer };
}): GatewayApp {
  const { config, db, log } = deps;
  const logger: FastifyBaseLogger = log;
  const http = Fastify({
    loggerInstance: logger,
    // One line per request comes from the onResponse hook below, not from fastify.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.MAX_BODY_BYTES,
    genReqId: createRequestIds(),
    ajv: ajvOptions,
    ...transportErrorOptions,
    ...(deps.https
      ? {
          https: {
            ...deps.https,
            requestCert: deps.https.ca !== undefined,
            rejectUnauthorized: deps.https.ca !== undefined,
          },
        }
      : {}),
  });
  // `hub` (created below) is read only on scrape.
  const metrics = createMetrics({
    app: "instagram",
    connections: () => hub.connections,
    collectDefaults: deps.collectDefaultMetrics,
  });
  const link = instrumentLink(deps.link, metrics);
  const directory = createDirectory(link);
  const auth = createAuthenticator({ db });
  const hub = createEventHub({ db, link, directory, log, ...deps.tuning });
  const threadPeers = createThreadPeers({ db });
  const ctx: RouteContext = { db, link, directory, auth, hub, threadPeers };

  registerProblemHandler(http);
  // One line per request, with the route template: never the query string (it may hold a token).
  http.addHook("onResponse", async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? "unknown",
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      "request",
    );
  });
  for (const s of sharedSchemas) http.addSchema(s);

  void http.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Switchboard Instagram-style gateway",
        version: VERSION,
        description:
          "Usernames, direct threads, end-to-end-encrypted thread items, message requests and live delivery over " +
          "Server-Sent Events. Errors are RFC 9457 problems (application/problem+json). See docs/gateway-instagram.md.",
      },
      components: { securitySchemes: { bearerAuth: { type: "http", scheme: "bearer" } } },
      tags: [
        { name: "accounts", description: "Sign-up, devices, access tokens" },
        { name: "users", description: "Users of every app, by ref" },
        { name: "keys", description: "Public keys for end-to-end encryption" },
        { name: "direct", description: "Threads, items, live events" },
        { name: "requests", description: "Message requests" },
        { name: "settings", description: "Reachability from third-party providers (docs/interop.md)" },
        {
          name: "safety",
          description: "Abuse reports with message franking, sealed sender (docs/safety.md)",
        },
      ],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
  });
  void http.register(async (scope) => {
    await accountRoutes(scope, ctx);
    await keyRoutes(scope, ctx);
    await directRoutes(scope, ctx);
    await pendingRoutes(scope, ctx);
    await blockRoutes(scope, ctx);
    await eventRoutes(scope, ctx);
    await privacyRoutes(scope, ctx);
    await reportRoutes(scope, ctx);
    await sealedRoutes(scope, ctx);
    scope.get("/openapi.json", { schema: { hide: true } }, async () => http.swagger());
    scope.get("/metrics", { schema: { hide: true } }, async (_request, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
    scope.get(
      "/healthz",
      {
        schema: {
          summary: "Health: the database answers",
          response: {
            200: { type: "object", properties: { status: { type: "string" } }, required: ["status"] },
            ...problemResponses,
          },
        },
      },
      async () => {
        await sql`SELECT 1`.execute(db);
        return { status: "ok" };
      },
    );
  });

  let sweepTimer: NodeJS.Timeout | undefined;
  async function sweep() {
    try {
      const n = await sweepExpiredRequests(db, new Date(Date.now() - REQUEST_RETENTION_MS));
      if (n > 0) log.info({ expired: n }, "request retention sweep");
    } catch (err) {
      log.warn({ err }, "request retention sweep failed");
    }
  }

  return {
    http,
    hub,
    metrics,
    async listen(opts) {
      await http.listen({ host: opts.host, port: opts.port });
      sweepTimer = setInterval(() => void sweep(), SWEEP_INTERVAL_MS);
      sweepTimer.unref();
      const address = http.server.address();
      const port = typeof address === "object" && address ? address.port : opts.port;
      log.info({ port }, "instagram gateway listening");
      return port;
    },
    async close() {
      if (sweepTimer) clearInterval(sweepTimer);
      await hub.close();
      await http.close();
    },
  };
}
