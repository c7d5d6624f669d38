// The whole system as real processes: the delivery service, then the three gateways pointed at
// it, each on free loopback ports and waited for until ready. For end-to-end tests and the
// benchmarks that must measure what `pnpm start` runs.
import { fileURLToPath } from "node:url";
import {
  freePort,
  httpReady,
  startServiceProcess,
  tcpReady,
  type ServiceProcess,
} from "./service-process.js";

/** The services' package directories, from this file in packages/testkit/{src,dist}. */
const serviceDir = (name: string) => fileURLToPath(new URL(`../../../services/${name}/`, import.meta.url));

/** How to start the system. */
export interface SystemOptions {
  databaseUrl: string;
  redisUrl: string;
  /** The apps' credentials: the delivery service's APP_TOKENS, each gateway's DELIVERY_APP_TOKEN. */
  tokens: { whatsapp: string; messenger: string; instagram: string };
  /** Added to every process's environment (log level, rate limits, REDIS_KEY_PREFIX...). */
  env?: Record<string, string>;
  /** Added to the delivery service's environment. */
  deliveryEnv?: Record<string, string>;
  /** The delivery service's Node arguments (default: its sources, like `pnpm start`'s without flags). */
  deliveryArgs?: string[];
  /** The gateways' Node arguments (default: their sources). */
  gatewayArgs?: string[];
  /** Start the gateways too (default true). */
  gateways?: boolean;
  /** Receives each process once it runs, so the caller owns it even when a later one fails. */
  started?: (process: ServiceProcess) => void;
  readyTimeoutMs?: number;
}

/** A started system. */
export interface System {
  delivery: ServiceProcess;
  /** The delivery service's gRPC address (`host:port`). */
  deliveryTarget: string;
  /** Its metrics listener (`/metrics`, `/healthz`). */
  metricsUrl: string;
  /** Undefined when started with `gateways: false`. */
  gateways?: {
    whatsapp: ServiceProcess;
    messenger: ServiceProcess;
    instagram: ServiceProcess;
    /** The WhatsApp-style gateway's gRPC address; its DEV_ADMIN endpoint (verification codes). */
    whatsappTarget: string;
    whatsappAdmin: string;
    /** The Messenger- and Instagram-style gateways' base URLs. */
    messengerUrl: string;
    instagramUrl: string;
  };
}

/** The delivery service's `APP_TOKENS` setting (also the load generator's `--app-tokens`). */
export const appTokensSetting = (tokens: SystemOptions["tokens"]): string =>
  Object.entries(tokens)
    .map(([app, t]) => `${app}=${t}`)
    .join(",");

/**
 * Starts the delivery service, then (unless `gateways: false`) the three gateways in parallel.
 * Throws when any does not become ready; the ones that did were passed to `started` — stop them.
 */
export async function startSystem(opts: SystemOptions): Promise<System> {
  const readyTimeoutMs = opts.readyTimeoutMs ?? 90_000;
  const start = async (o: Parameters<typeof startServiceProcess>[0]) => {
    const p = await startServiceProcess({ readyTimeoutMs, ...o });
    opts.started?.(p);
    return p;
  };
  const common = { DATABASE_URL: opts.databaseUrl, REDIS_URL: opts.redisUrl, ...opts.env };
  const ports = { delivery: await freePort(), metrics: await freePort() };
  const metricsUrl = `http://127.0.0.1:${ports.metrics}`;
  const delivery = await start({
    name: "delivery",
    cwd: serviceDir("delivery"),
    ...(opts.deliveryArgs ? { args: opts.deliveryArgs } : {}),
    env: {
      ...common,
      APP_TOKENS: appTokensSetting(opts.tokens),
      GRPC_HOST: "127.0.0.1",
      GRPC_PORT: String(ports.delivery),
      METRICS_PORT: String(ports.metrics),
      ...opts.deliveryEnv,
    },
    ready: httpReady(`${metricsUrl}/healthz`),
  });
  const deliveryTarget = `127.0.0.1:${ports.delivery}`;
  if (opts.gateways === false) return { delivery, deliveryTarget, metricsUrl };

  const gw = {
    whatsapp: await freePort(),
    whatsappAdmin: await freePort(),
    messenger: await freePort(),
    instagram: await freePort(),
  };
  // No metrics listeners: a default port would collide with other systems on this machine.
  const gatewayEnv = { ...common, DELIVERY_TARGET: deliveryTarget, METRICS_PORT: "0" };
  const args = opts.gatewayArgs ? { args: opts.gatewayArgs } : {};
  const messengerUrl = `http://127.0.0.1:${gw.messenger}`;
  const instagramUrl = `http://127.0.0.1:${gw.instagram}`;
  // allSettled: a gateway that did start is passed to `started` even if another one failed.
  const results = await Promise.allSettled([
    start({
      name: "gateway-whatsapp",
      cwd: serviceDir("gateway-whatsapp"),
      ...args,
      env: {
        ...gatewayEnv,
        DELIVERY_APP_TOKEN: opts.tokens.whatsapp,
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(gw.whatsapp),
        // Registration reads verification codes from the development admin endpoint.
        DEV_ADMIN: "true",
        ADMIN_PORT: String(gw.whatsappAdmin),
      },
      ready: async () => (await tcpReady(gw.whatsapp)()) && (await tcpReady(gw.whatsappAdmin)()),
    }),
    start({
      name: "gateway-messenger",
      cwd: serviceDir("gateway-messenger"),
      ...args,
      env: {
        ...gatewayEnv,
        DELIVERY_APP_TOKEN: opts.tokens.messenger,
        HTTP_HOST: "127.0.0.1",
        HTTP_PORT: String(gw.messenger),
      },
      ready: httpReady(`${messengerUrl}/healthz`),
    }),
    start({
      name: "gateway-instagram",
      cwd: serviceDir("gateway-instagram"),
      ...args,
      env: {
        ...gatewayEnv,
        DELIVERY_APP_TOKEN: opts.tokens.instagram,
        HTTP_HOST: "127.0.0.1",
        HTTP_PORT: String(gw.instagram),
      },
      ready: httpReady(`${instagramUrl}/healthz`),
    }),
  ]);
  const [whatsapp, messenger, instagram] = results.map((r) => {
    if (r.status === "rejected") throw r.reason;
    return r.value;
  }) as [ServiceProcess, ServiceProcess, ServiceProcess];
  return {
    delivery,
    deliveryTarget,
    metricsUrl,
    gateways: {
      whatsapp,
      messenger,
      instagram,
      whatsappTarget: `127.0.0.1:${gw.whatsapp}`,
      whatsappAdmin: `http://127.0.0.1:${gw.whatsappAdmin}`,
      messengerUrl,
      instagramUrl,
    },
  };
}
