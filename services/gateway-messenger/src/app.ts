import swagger from "@fastify/swagger";
import websocket from "@fastify/websocket";
import type { DeliveryLink } from "@switchboard/delivery-link";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import { sql } from "kysely";
import type { Logger } from "pino";
import type { GatewayMessengerConfig } from "./config.js";
import { createDirectory } from "./directory/directory.js";
import { accountRoutes } from "./http/account-routes.js";
import { createAuthenticator } from "./http/auth.js";
import type { RouteDeps } from "./http/deps.js";
import { groupRoutes } from "./http/group-routes.js";
import { keyRoutes } from "./http/key-routes.js";
import { messageRoutes } from "./http/message-routes.js";
import { installProblemHandler } from "./http/problem.js";
import { createRequestIds, transportErrorOptions } from "@switchboard/gateway-http";
import { SHARED_SCHEMAS } from "./http/schemas.js";
import { streamRoute } from "./http/stream-route.js";
import { privacyRoutes } from "./http/privacy-routes.js";
import { reportRoutes } from "./http/report-routes.js";
import { sealedRoutes } from "./http/sealed-routes.js";
import { requestRoutes } from "./http/request-routes.js";
import { userRoutes } from "./http/user-routes.js";
import { createConnectionRegistry, type ConnectionRegistry } from "./live/connections.js";
import { createMetrics, instrumentLink, type GatewayMetrics } from "@switchboard/gateway-metrics";
import type { GatewayDatabase } from "./storage/schema.js";
import { VERSION } from "./version.js";

/** Configuration the app needs (a subset of the gateway config, so tests can build it directly). */
export type AppConfig = Pick<GatewayMessengerConfig, "MAX_BODY_BYTES" | "WS_HEARTBEAT_MS"> &
  Partial<Pick<GatewayMessengerConfig, "WS_MAX_BUFFERED_BYTES">>;

/** The built gateway: a fastify instance plus its live connections. */
export interface GatewayApp {
  readonly http: FastifyInstance;
  readonly live: ConnectionRegistry;
  /** The instance's Prometheus metrics (also served on `GET /metrics`). */
  readonly metrics: GatewayMetrics;
  /** Stops taking requests and closes every WebSocket (the link and database belong to the caller). */
  close(): Promise<void>;
}

/** Largest WebSocket frame a client may send (ack frames of 1,000 ids fit easily). */
const MAX_CLIENT_FRAME_BYTES = 64 * 1024;

/**
 * Wires the Messenger-style gateway from its dependencies. Reads no environment and opens no
 * port; serve it with `app.http.listen(...)`, or `app.http.inject(...)` in tests.
 */
export async function buildApp(deps: {
  config: AppConfig;
  db: Kysely<GatewayDatabase>;
  link: DeliveryLink;
  log: Logger;
  collectDefaultMetrics?: boolean;
  /**
   * Serve HTTPS instead of HTTP (PEM contents of TLS_CERT_FILE / TLS_KEY_FILE); with `ca`
   * (TLS_CLIENT_CA_FILE) clients must present a certificate it signed. Default: plaintext HTTP.
   */
  https?: { cert: Buffer; key: Buffer; ca?: Buffer };
}): Promise<GatewayApp> {
  const { config, db, log } = deps;
  // Typed as fastify's logger so the instance has fastify's default logger type parameter.
  const loggerInstance: FastifyBaseLogger = log;
  const http = Fastify({
    loggerInstance,
    // One line per request comes from the onResponse hook below instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.MAX_BODY_BYTES,
    requestIdHeader: "x-request-id",
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
    genReqId: createRequestIds(),
    ajv: { customOptions: { removeAdditional: false, allErrors: true, coerceTypes: "array" } },
  });
  installProblemHandler(http);
  http.decorateRequest("principal", null);
  http.addHook("onSend", async (request, reply) => {
    void reply.header("x-request-id", request.id);
  });
  // One line per request; the route pattern, never the raw URL (it may carry ?access_token=).
  http.addHook("onResponse", async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? "unmatched",
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime),
      },
      "request",
    );
  });

  await http.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Switchboard Messenger-style API",
        version: VERSION,
        description:
          "Numeric user ids, bearer access tokens, a Send API in the style of Messenger's and a WebSocket for live " +
          "delivery. Every message is end-to-end encrypted by the client (libsignal); the server sees ciphertext " +
          "only. Users of the other apps are addressed in this API's idiom (see the Recipient schema). Errors are " +
          "RFC 9457 problem details (application/problem+json).",
      },
      components: { securitySchemes: { bearerAuth: { type: "http", scheme: "bearer" } } },
      tags: [
        { name: "accounts", description: "signup, devices, the caller's user" },
        { name: "keys", description: "public keys for end-to-end encryption" },
        { name: "users", description: "users of any app" },
        { name: "messages", description: "the Send API" },
        { name: "groups", description: "group threads" },
        { name: "requests", description: "message requests, group invitations, blocks (docs/safety.md)" },
        { name: "stream", description: "live delivery over a WebSocket" },
        { name: "settings", description: "reachability from third-party providers (docs/interop.md)" },
        { name: "safety", description: "abuse reports (franking), sealed sender (docs/safety.md)" },
      ],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
  });
  for (const schema of SHARED_SCHEMAS) http.addSchema(schema);
  await http.register(websocket, {
    options: { maxPayload: MAX_CLIENT_FRAME_BYTES, perMessageDeflate: false },
    errorHandler: (err, socket) => {
      log.debug({ err }, "websocket error");
      socket.terminate();
    },
  });

  // `live` (created below) is read only on scrape.
  const metrics = createMetrics({
    app: "messenger",
    connections: () => live.size,
    collectDefaults: deps.collectDefaultMetrics,
  });
  const link = instrumentLink(deps.link, metrics);
  const directory = createDirectory(link);
  const live = createConnectionRegistry({
    link,
    directory,
    log: log.child({ component: "live" }),
    heartbeatMs: config.WS_HEARTBEAT_MS,
    maxBufferedBytes: config.WS_MAX_BUFFERED_BYTES,
  });
  const routeDeps: RouteDeps = { db, link, directory, auth: createAuthenticator({ db }), live, log };

  http.get("/openapi.json", { schema: { hide: true } }, async () => http.swagger());
  http.get("/metrics", { schema: { hide: true } }, async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  http.get("/healthz", { schema: { hide: true } }, async (_request, reply) => {
    try {
      await sql`SELECT 1`.execute(db);
      const memory = process.memoryUsage();
      return {
        status: "ok",
        connections: live.size,
        linkDevices: link.subscribedDevices,
        memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
      };
    } catch {
      return reply.code(503).send({ status: "database unavailable" });
    }
  });
  await http.register(async (scope) => {
    await accountRoutes(scope, routeDeps);
    await keyRoutes(scope, routeDeps);
    await userRoutes(scope, routeDeps);
    await messageRoutes(scope, routeDeps);
    await groupRoutes(scope, routeDeps);
    await privacyRoutes(scope, routeDeps);
    await reportRoutes(scope, routeDeps);
    await sealedRoutes(scope, routeDeps);
    await requestRoutes(scope, routeDeps);
    await streamRoute(scope, routeDeps);
  });
  http.addHook("preClose", async () => live.close());

  return {
    http,
    live,
    metrics,
    close: () => http.close(),
  };
}
