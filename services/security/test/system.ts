// The system under attack: the delivery service and the three gateways as separate processes on
// a cloned database and the machine's Redis, each from its sources in its own directory (as in
// services/e2e), with every line each process writes kept for the log scan.
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { cloneTemplateDatabase, redisUrl, type DatabaseClone } from "@switchboard/testkit";
import {
  freePort,
  httpReady,
  startServiceProcess,
  tcpReady,
  type ServiceProcess,
} from "@switchboard/testkit/service-process";

export const serviceDir = (name: string) => fileURLToPath(new URL(`../../${name}/`, import.meta.url));

/** The four service names, in start order. */
export const SERVICES = ["delivery", "gateway-whatsapp", "gateway-messenger", "gateway-instagram"] as const;
export type ServiceName = (typeof SERVICES)[number];

/** What {@link startSystem} started. */
export interface System {
  clone: DatabaseClone;
  processes: Record<ServiceName, ServiceProcess>;
  /** Every chunk each process wrote to stdout/stderr, in order. */
  logs: Record<ServiceName, string[]>;
  tokens: { whatsapp: string; messenger: string; instagram: string };
  ports: {
    delivery: number;
    metrics: number;
    whatsapp: number;
    whatsappMetrics: number;
    whatsappAdmin: number;
    messenger: number;
    instagram: number;
  };
  /** Stops every process and drops the database clone. */
  stop(): Promise<void>;
}

/** Options of {@link startSystem}. */
export interface SystemOptions {
  /** LOG_LEVEL of every service (default "warn"). */
  logLevel?: string;
  /** Extra environment per service (e.g. TLS files). */
  env?: Partial<Record<ServiceName, Record<string, string>>>;
  /** URL scheme the HTTP gateways' readiness probe uses (default http). */
  httpScheme?: "http" | "https";
}

/**
 * Starts delivery, then the three gateways in parallel. Whatever started is stopped again when a
 * later start fails. Call `stop()` in afterAll.
 */
export async function startSystem(opts: SystemOptions = {}): Promise<System> {
  const clone = await cloneTemplateDatabase();
  const ports = {
    delivery: await freePort(),
    metrics: await freePort(),
    whatsapp: await freePort(),
    whatsappMetrics: await freePort(),
    whatsappAdmin: await freePort(),
    messenger: await freePort(),
    instagram: await freePort(),
  };
  const token = (app: string) => `sec-${app}-${randomBytes(12).toString("hex")}`;
  const tokens = {
    whatsapp: token("whatsapp"),
    messenger: token("messenger"),
    instagram: token("instagram"),
  };
  const logs: Record<ServiceName, string[]> = {
    delivery: [],
    "gateway-whatsapp": [],
    "gateway-messenger": [],
    "gateway-instagram": [],
  };
  const started: ServiceProcess[] = [];
  const common = { DATABASE_URL: clone.url, LOG_LEVEL: opts.logLevel ?? "warn", SHUTDOWN_GRACE_MS: "2000" };
  const start = async (name: ServiceName, env: Record<string, string>, ready: () => Promise<boolean>) => {
    const proc = await startServiceProcess({
      name,
      cwd: serviceDir(name === "delivery" ? "delivery" : name),
      env: { ...common, ...env, ...opts.env?.[name] },
      ready,
      readyTimeoutMs: 120_000,
      onOutput: (chunk) => logs[name].push(chunk),
    });
    started.push(proc);
    return proc;
  };
  const stopAll = async () => {
    await Promise.all(started.map((p) => p.stop("SIGTERM", 5_000)));
  };
  const scheme = opts.httpScheme ?? "http";
  // A self-signed certificate fails fetch's verification; readiness only needs the port open.
  const httpUp = (port: number) =>
    scheme === "https" ? tcpReady(port) : httpReady(`http://127.0.0.1:${port}/healthz`);
  try {
    const delivery = await start(
      "delivery",
      {
        REDIS_URL: redisUrl(),
        APP_TOKENS: Object.entries(tokens)
          .map(([app, t]) => `${app}=${t}`)
          .join(","),
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(ports.delivery),
        METRICS_PORT: String(ports.metrics),
        INSTANCE_ID: "security-delivery",
        MIGRATE_ON_START: "false",
      },
      httpReady(`http://127.0.0.1:${ports.metrics}/healthz`),
    );
    const gateway = { DELIVERY_TARGET: `127.0.0.1:${ports.delivery}` };
    const results = await Promise.allSettled([
      start(
        "gateway-whatsapp",
        {
          ...gateway,
          DELIVERY_APP_TOKEN: tokens.whatsapp,
          GRPC_HOST: "127.0.0.1",
          GRPC_PORT: String(ports.whatsapp),
          METRICS_PORT: String(ports.whatsappMetrics),
          DEV_ADMIN: "true",
          ADMIN_PORT: String(ports.whatsappAdmin),
        },
        async () => (await tcpReady(ports.whatsapp)()) && (await tcpReady(ports.whatsappAdmin)()),
      ),
      start(
        "gateway-messenger",
        {
          ...gateway,
          DELIVERY_APP_TOKEN: tokens.messenger,
          HTTP_HOST: "127.0.0.1",
          HTTP_PORT: String(ports.messenger),
        },
        httpUp(ports.messenger),
      ),
      start(
        "gateway-instagram",
        {
          ...gateway,
          DELIVERY_APP_TOKEN: tokens.instagram,
          HTTP_HOST: "127.0.0.1",
          HTTP_PORT: String(ports.instagram),
        },
        httpUp(ports.instagram),
      ),
    ]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const [whatsapp, messenger, instagram] = results.map(
      (r) => (r as PromiseFulfilledResult<ServiceProcess>).value,
    ) as [ServiceProcess, ServiceProcess, ServiceProcess];
    return {
      clone,
      processes: {
        delivery,
        "gateway-whatsapp": whatsapp,
        "gateway-messenger": messenger,
        "gateway-instagram": instagram,
      },
      logs,
      tokens,
      ports,
      async stop() {
        await stopAll();
        await clone.drop();
      },
    };
  } catch (err) {
    await stopAll();
    await clone.drop();
    throw err;
  }
}

/** Resolves true when every process is up: delivery's and the WhatsApp gateway's /healthz, the HTTP gateways' /healthz. */
export async function healthy(sys: System): Promise<Record<ServiceName, boolean>> {
  const [d, w, m, i] = await Promise.all([
    httpReady(`http://127.0.0.1:${sys.ports.metrics}/healthz`)(),
    httpReady(`http://127.0.0.1:${sys.ports.whatsappMetrics}/healthz`)(),
    httpReady(`http://127.0.0.1:${sys.ports.messenger}/healthz`)(),
    httpReady(`http://127.0.0.1:${sys.ports.instagram}/healthz`)(),
  ]);
  return { delivery: d, "gateway-whatsapp": w, "gateway-messenger": m, "gateway-instagram": i };
}
