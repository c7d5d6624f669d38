import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildApp as buildDelivery } from "@switchboard/delivery";
import { createDeliveryLink, type DeliveryLink } from "@switchboard/delivery-link";
import { createMemoryFanout, createRedisFanout, type Fanout } from "@switchboard/fanout";
import {
  buildApp as buildInstagram,
  migrateGateway as migrateInstagram,
  type IgDatabase,
} from "@switchboard/gateway-instagram";
import {
  buildApp as buildMessenger,
  migrateGatewayDatabase as migrateMessenger,
  type GatewayDatabase as MessengerDatabase,
} from "@switchboard/gateway-messenger";
import {
  buildApp as buildWhatsApp,
  createDevCodeSender,
  migrateWaDatabase as migrateWhatsApp,
  type WaDatabase,
} from "@switchboard/gateway-whatsapp";
import { App } from "@switchboard/proto";
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from "@switchboard/ratelimit";
import { createDatabase, createEmbeddedDatabase, migrateToLatest, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { StandaloneConfig } from "./config.js";

/** Where everything listens, and the generated app tokens (for grpcurl against delivery). */
export interface Endpoints {
  delivery: string;
  deliveryMetrics: string;
  whatsapp: string;
  whatsappAdmin: string;
  messenger: string;
  instagram: string;
  appTokens: Record<"whatsapp" | "messenger" | "instagram", string>;
  embeddedDatabase: boolean;
  embeddedFanout: boolean;
}

/** A running system. */
export interface System {
  readonly endpoints: Endpoints;
  /** Stops the gateways, then delivery, then closes the database (flushing the embedded one). */
  close(): Promise<void>;
}

type Tokens = Record<"whatsapp" | "messenger" | "instagram", string>;

/** App tokens are secrets with no defaults: generated once per data directory and kept there. */
async function loadOrCreateTokens(dataDir: string): Promise<Tokens> {
  const file = join(dataDir, "app-tokens.json");
  try {
    return JSON.parse(await readFile(file, "utf8")) as Tokens;
  } catch {
    const tokens: Tokens = {
      whatsapp: randomBytes(24).toString("base64url"),
      messenger: randomBytes(24).toString("base64url"),
      instagram: randomBytes(24).toString("base64url"),
    };
    await mkdir(dataDir, { recursive: true });
    await writeFile(file, JSON.stringify(tokens, null, 2), { mode: 0o600 });
    return tokens;
  }
}

/**
 * Starts the delivery service and the three gateways in this process. One database (PostgreSQL
 * from DATABASE_URL, else embedded PGlite in DATA_DIR/pglite, shared by all four), one fan-out bus
 * (Redis from REDIS_URL, else in-process). Each gateway reaches delivery over gRPC on loopback,
 * exactly as separate processes would.
 */
export async function startSystem(config: StandaloneConfig, log: Logger): Promise<System> {
  const embeddedDatabase = !config.DATABASE_URL;
  const db: Kysely<Database> = config.DATABASE_URL
    ? createDatabase({
        url: config.DATABASE_URL,
        poolSize: config.DATABASE_POOL_SIZE,
        applicationName: "switchboard-standalone",
      })
    : await createEmbeddedDatabase({ dataDir: join(config.DATA_DIR, "pglite") });
  const closers: Array<() => Promise<void>> = [async () => db.destroy()];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err }, "shutdown step failed");
      }
    }
  };
  try {
    await migrateToLatest(db);
    await migrateWhatsApp(db as unknown as Kysely<WaDatabase>);
    await migrateMessenger(db as unknown as Kysely<MessengerDatabase>);
    await migrateInstagram(db as unknown as Kysely<IgDatabase>);

    let fanout: Fanout;
    let limiter: RateLimiter;
    if (config.REDIS_URL) {
      fanout = await createRedisFanout({ url: config.REDIS_URL, log });
      limiter = createRedisRateLimiter({ url: config.REDIS_URL });
    } else {
      fanout = createMemoryFanout();
      limiter = createMemoryRateLimiter();
    }
    closers.push(async () => {
      await fanout.close();
      await limiter.close();
    });

    const tokens = await loadOrCreateTokens(config.DATA_DIR);
    const delivery = buildDelivery({
      config: {
        APP_TOKENS: [
          { app: App.WHATSAPP, providerId: "", token: tokens.whatsapp },
          { app: App.MESSENGER, providerId: "", token: tokens.messenger },
          { app: App.INSTAGRAM, providerId: "", token: tokens.instagram },
        ],
        MAX_CIPHERTEXT_BYTES: 256 * 1024,
        QUEUE_TTL_SECONDS: 30 * 24 * 3600,
        MAX_QUEUE_LENGTH: 10_000,
        SEND_BATCH_MAX: 2_000,
        // One lane: the largest group commits (and PGlite runs one transaction at a time anyway).
        SEND_LANES: 1,
        ACK_BATCH_MAX: 2_000,
        STREAM_POLL_MS: 15_000,
        MAX_DEVICES: 6,
        MAX_GROUP_MEMBERS: 1_000,
        INSTANCE_ID: "standalone",
      },
      db,
      fanout,
      limiter,
      log: log.child({ component: "delivery" }),
    });
    const { port: deliveryPort, metricsPort } = await delivery.listen({
      host: config.HOST,
      port: config.DELIVERY_GRPC_PORT,
      metricsPort: config.DELIVERY_METRICS_PORT,
    });
    closers.push(() => delivery.close(config.SHUTDOWN_GRACE_MS));
    const deliveryTarget = `127.0.0.1:${deliveryPort}`;

    const link = (app: keyof Tokens, name: string): DeliveryLink => {
      const l = createDeliveryLink({
        target: deliveryTarget,
        appToken: tokens[app],
        streams: config.DELIVERY_STREAMS,
        log: log.child({ component: `${name}-delivery-link` }),
      });
      closers.push(() => l.close());
      return l;
    };

    const whatsapp = buildWhatsApp({
      db: db as unknown as Kysely<WaDatabase>,
      link: link("whatsapp", "gateway-whatsapp"),
      log: log.child({ component: "gateway-whatsapp" }),
      codeSender: createDevCodeSender(log.child({ component: "gateway-whatsapp-codes" })),
    });
    const wa = await whatsapp.listen({
      host: config.HOST,
      port: config.WHATSAPP_GRPC_PORT,
      adminPort: config.WHATSAPP_ADMIN_PORT,
    });
    closers.push(() => whatsapp.close(config.SHUTDOWN_GRACE_MS));

    const messenger = await buildMessenger({
      config: { MAX_BODY_BYTES: 1024 * 1024, WS_HEARTBEAT_MS: 30_000 },
      db: db as unknown as Kysely<MessengerDatabase>,
      link: link("messenger", "gateway-messenger"),
      log: log.child({ component: "gateway-messenger" }),
    });
    await messenger.http.listen({ host: config.HOST, port: config.MESSENGER_HTTP_PORT });
    const messengerAddress = messenger.http.server.address();
    closers.push(() => messenger.close());

    const instagram = buildInstagram({
      config: { MAX_BODY_BYTES: 4 * 1024 * 1024 },
      db: db as unknown as Kysely<IgDatabase>,
      link: link("instagram", "gateway-instagram"),
      log: log.child({ component: "gateway-instagram" }),
    });
    const igPort = await instagram.listen({ host: config.HOST, port: config.INSTAGRAM_HTTP_PORT });
    closers.push(() => instagram.close());

    const host = config.HOST === "0.0.0.0" ? "127.0.0.1" : config.HOST;
    return {
      endpoints: {
        delivery: `${host}:${deliveryPort}`,
        deliveryMetrics: `http://${host}:${metricsPort}/metrics`,
        whatsapp: `${host}:${wa.port}`,
        whatsappAdmin: `http://127.0.0.1:${wa.adminPort ?? config.WHATSAPP_ADMIN_PORT}`,
        messenger: `http://${host}:${typeof messengerAddress === "object" && messengerAddress ? messengerAddress.port : config.MESSENGER_HTTP_PORT}`,
        instagram: `http://${host}:${igPort}`,
        appTokens: tokens,
        embeddedDatabase,
        embeddedFanout: !config.REDIS_URL,
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
