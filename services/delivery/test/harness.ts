import { randomBytes, randomUUID } from "node:crypto";
import { createRedisFanout, type Fanout } from "@switchboard/fanout";
import { createClient, type ServiceClient } from "@switchboard/grpc";
import {
  App,
  DirectoryService,
  EnvelopeType,
  GroupService,
  KeyService,
  MessageService,
  type ConnectResponse,
  type Envelope,
} from "@switchboard/proto";
import { createDatabase, type Database } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import type { Kysely } from "kysely";
import pino from "pino";
import { onTestFinished } from "vitest";
import { buildApp, type AppConfig, type DeliveryApp } from "../src/app.js";
import { testDeliveryConfig } from "../src/testing.js";

export const TOKENS = {
  whatsapp: "wa-token-0123456789abcdef",
  messenger: "ms-token-0123456789abcdef",
  instagram: "ig-token-0123456789abcdef",
} as const;

export const testConfig = (over: Partial<AppConfig> = {}): AppConfig => testDeliveryConfig(TOKENS, over);

export const testLog = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** One shared database (cloned per test) and Redis prefix for one or more delivery instances. */
export async function createBackend() {
  const clone = await cloneTemplateDatabase();
  const db = createDatabase({ url: clone.url, poolSize: 10 });
  const prefix = redisTestPrefix();
  onTestFinished(async () => {
    await db.destroy();
    await clone.drop();
  });
  return { db, prefix, databaseUrl: clone.url };
}

export interface Instance {
  app: DeliveryApp;
  port: number;
  /** The metrics/health HTTP port, when started with `metrics: true`. */
  metricsPort?: number;
  target: string;
  fanout: Fanout;
  close(): Promise<void>;
}

/** Starts a delivery instance on port 0 over the backend; closed when the test finishes. */
export async function startInstance(
  backend: { db: Kysely<Database>; prefix: string },
  opts: { config?: Partial<AppConfig>; redis?: string; fanout?: Fanout; metrics?: boolean } = {},
): Promise<Instance> {
  const fanout =
    opts.fanout ?? (await createRedisFanout({ url: opts.redis ?? redisUrl(), keyPrefix: backend.prefix }));
  const app = buildApp({
    config: testConfig(opts.config),
    db: backend.db,
    fanout,
    log: testLog,
    collectDefaultMetrics: false,
  });
  const { port, metricsPort } = await app.listen({
    host: "127.0.0.1",
    port: 0,
    metricsPort: opts.metrics ? 0 : undefined,
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await app.close(1000);
    if (!opts.fanout) await fanout.close();
  };
  onTestFinished(close);
  return { app, port, metricsPort, target: `127.0.0.1:${port}`, fanout, close };
}

type Clients = {
  directory: ServiceClient<typeof DirectoryService>;
  keys: ServiceClient<typeof KeyService>;
  messages: ServiceClient<typeof MessageService>;
  groups: ServiceClient<typeof GroupService>;
};

/** Typed clients for one credential; closed when the test finishes. */
export function clientsFor(target: string, authorization: string): Clients {
  const metadata = () => ({ authorization });
  const c: Clients = {
    directory: createClient(DirectoryService, target, { metadata }),
    keys: createClient(KeyService, target, { metadata }),
    messages: createClient(MessageService, target, { metadata }),
    groups: createClient(GroupService, target, { metadata }),
  };
  onTestFinished(() => {
    for (const x of Object.values(c)) x.close();
  });
  return c;
}

export const appAuth = (app: keyof typeof TOKENS) => `Bearer ${TOKENS[app]}`;
export const deviceAuth = (accountId: string, deviceId: number, password: string) =>
  `Basic ${Buffer.from(`${accountId}.${deviceId}:${password}`).toString("base64")}`;

export interface TestDevice {
  accountId: string;
  deviceId: number;
  registrationId: number;
  password: string;
  auth: string;
}

let phone = 15550000000 + Math.floor(Math.random() * 1_000_000) * 100;

/** Registers a WhatsApp-style account (primary device) through an app credential. */
export async function registerAccount(
  target: string,
  app: keyof typeof TOKENS = "whatsapp",
): Promise<TestDevice> {
  const c = clientsFor(target, appAuth(app));
  const password = randomBytes(18).toString("base64url");
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const handle =
    app === "whatsapp"
      ? { app: App.WHATSAPP, value: `+${phone++}` }
      : app === "messenger"
        ? { app: App.MESSENGER, value: String(100000 + Math.floor(Math.random() * 1e9)) }
        : { app: App.INSTAGRAM, value: `u_${randomUUID().slice(0, 8)}` };
  const r = await c.directory.registerAccount({ handle, registrationId, password });
  const accountId = r.account?.id ?? "";
  return { accountId, deviceId: 1, registrationId, password, auth: deviceAuth(accountId, 1, password) };
}

/** Links another device to an account through the app credential. */
export async function linkDevice(
  target: string,
  primary: TestDevice,
  app: keyof typeof TOKENS = "whatsapp",
): Promise<TestDevice> {
  const c = clientsFor(target, appAuth(app));
  const password = randomBytes(18).toString("base64url");
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await c.directory.registerDevice({ accountId: primary.accountId, registrationId, password });
  const deviceId = r.device?.deviceId ?? 0;
  return {
    accountId: primary.accountId,
    deviceId,
    registrationId,
    password,
    auth: deviceAuth(primary.accountId, deviceId, password),
  };
}

/** Sends one ciphertext per device of `to` (which must be the recipient's full device list). */
export function sendTo(
  c: Clients,
  to: TestDevice[],
  text: string,
  clientMessageId = randomUUID(),
  extra: { ephemeral?: boolean; noDeliveryReceipt?: boolean } = {},
) {
  return c.messages.sendMessage({
    destinationAccountId: to[0]?.accountId ?? "",
    messages: to.map((d) => ({
      deviceId: d.deviceId,
      registrationId: d.registrationId,
      type: EnvelopeType.CIPHERTEXT,
      content: Buffer.from(text),
    })),
    clientMessageId,
    clientTimestampMs: BigInt(Date.now()),
    ...extra,
  });
}

/** A device reading its queue over Connect, collecting envelopes; acks automatically unless told not to. */
export function connectDevice(
  target: string,
  device: TestDevice,
  opts: { autoAck?: boolean; window?: number } = {},
) {
  const c = clientsFor(target, device.auth);
  const stream = c.messages.connect();
  const received: Envelope[] = [];
  const frames: ConnectResponse[] = [];
  let queueEmpty = false;
  let displaced = false;
  let ended: unknown;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  const done = (async () => {
    try {
      for await (const f of stream.responses) {
        frames.push(f);
        if (f.frame.case === "delivery") {
          received.push(f.frame.value);
          if (opts.autoAck !== false) {
            await stream.send({
              frame: {
                case: "ack",
                value: {
                  device: { accountId: device.accountId, deviceId: device.deviceId },
                  messageIds: [f.frame.value.id],
                },
              },
            });
          }
        } else if (f.frame.case === "queueEmpty") queueEmpty = true;
        else if (f.frame.case === "displaced") displaced = true;
        notify();
      }
    } catch (err) {
      ended = err;
    }
    notify();
  })();
  void stream.send({
    frame: {
      case: "subscribe",
      value: { device: { accountId: device.accountId, deviceId: device.deviceId }, window: opts.window ?? 0 },
    },
  });
  onTestFinished(() => stream.cancel());
  return {
    stream,
    received,
    frames,
    get queueEmpty() {
      return queueEmpty;
    },
    get displaced() {
      return displaced;
    },
    get error() {
      return ended;
    },
    done,
    ack: (ids: string[]) =>
      stream.send({
        frame: {
          case: "ack",
          value: { device: { accountId: device.accountId, deviceId: device.deviceId }, messageIds: ids },
        },
      }),
    /** Resolves when `predicate` holds (checked on every frame), or rejects after `timeoutMs`. */
    async until(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
      if (predicate()) return;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`condition not met within ${timeoutMs} ms (received ${received.length})`));
        }, timeoutMs);
        const check = () => {
          if (predicate()) {
            clearTimeout(t);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    },
  };
}

export const text = (e: Envelope) => Buffer.from(e.content).toString();
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
