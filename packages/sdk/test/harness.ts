// Integration harness: a real delivery service (buildApp over a cloned database and a prefixed
// Redis fan-out) on port 0, and SDK clients talking to it over gRPC.
import { buildApp } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createRedisFanout } from "@switchboard/fanout";
import { App, type Envelope } from "@switchboard/proto";
import { createDatabase, type Database } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import type { Kysely } from "kysely";
import { pino, type Logger } from "pino";
import { onTestFinished } from "vitest";
import {
  createClient,
  createDeliveryTransport,
  createMemoryStore,
  type ClientEvents,
  type ClientOptions,
  type ClientStore,
  type SwitchboardClient,
  type Transport,
  recordEvents,
  type RecordedEvents,
} from "../src/index.js";

export const APP_TOKEN = "wa-sdk-test-token-0123456789abcdef";

const config = testDeliveryConfig({ whatsapp: APP_TOKEN }, { INSTANCE_ID: "sdk-test" });

/** A delivery service started for one test, with its database and Redis key prefix. */
export interface TestDelivery {
  /** gRPC address, `127.0.0.1:<port>`. */
  target: string;
  /** The service's own database (a clone of the migrated template). */
  db: Kysely<Database>;
  /** Prefix of every Redis channel and key the service uses. */
  redisPrefix: string;
}

/**
 * Starts a delivery service for this test; stopped (and its database dropped) when it finishes.
 * `log` replaces the default logger (silent unless TEST_LOG_LEVEL is set).
 */
export async function startDelivery(options: { log?: Logger } = {}): Promise<TestDelivery> {
  const clone = await cloneTemplateDatabase();
  const db = createDatabase({ url: clone.url, poolSize: 10 });
  const redisPrefix = redisTestPrefix();
  const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: redisPrefix });
  const app = buildApp({
    config,
    db,
    fanout,
    log: options.log ?? pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    collectDefaultMetrics: false,
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  onTestFinished(async () => {
    await app.close(1000);
    await fanout.close();
    await db.destroy();
    await clone.drop();
  });
  return { target: `127.0.0.1:${port}`, db, redisPrefix };
}

export type Recorded = RecordedEvents;

export interface TestClient {
  client: SwitchboardClient;
  transport: Transport;
  store: ClientStore;
  events: Recorded;
  accountId: string;
  deviceId: number;
}

/** Opens a client over a fresh DeliveryTransport; stopped and closed when the test finishes. */
export async function openClient(
  target: string,
  options: { store?: ClientStore; wrap?: (t: Transport) => Transport } & Partial<ClientOptions> = {},
): Promise<Omit<TestClient, "accountId" | "deviceId">> {
  const delivery = createDeliveryTransport({ target });
  const transport = options.wrap?.(delivery) ?? delivery;
  const store = options.store ?? createMemoryStore();
  const client = await createClient({ ...options, transport, store });
  const events = recordEvents(client);
  onTestFinished(async () => {
    await client.close();
    await delivery.close();
  });
  return { client, transport, store, events };
}

let phone = 15_550_000_000 + Math.floor(Math.random() * 1_000_000) * 100;

/** Registers a WhatsApp-style account with the SDK (app credential); call `client.start()` to receive. */
export async function registerUser(
  target: string,
  options: Parameters<typeof openClient>[1] & { deviceName?: string } = {},
): Promise<TestClient> {
  const opened = await openClient(target, options);
  const { accountId, deviceId } = await opened.client.registerAccount({
    handle: { app: App.WHATSAPP, value: `+${phone++}` },
    appToken: APP_TOKEN,
    deviceName: options.deviceName,
  });
  return { ...opened, accountId, deviceId };
}

/** Links a new device to `primary`'s account through the primary device (no app credential). */
export async function linkDevice(target: string, primary: TestClient): Promise<TestClient> {
  const opened = await openClient(target);
  const request = await opened.client.createDeviceLinkRequest({
    accountId: primary.accountId,
    deviceName: "laptop",
  });
  const device = await primary.client.approveDeviceLink(request);
  const { accountId, deviceId } = await opened.client.completeDeviceLink({
    accountId: primary.accountId,
    deviceId: device.deviceId,
  });
  return { ...opened, accountId, deviceId };
}

/** Resolves once `events[name]` holds `count` items, or rejects after `timeoutMs`. */
export async function until<K extends keyof ClientEvents>(
  c: { events: Recorded },
  name: K,
  count = 1,
  timeoutMs = 15_000,
): Promise<ClientEvents[K][]> {
  const started = Date.now();
  while (c.events[name].length < count) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `expected ${count} ${name} event(s) within ${timeoutMs} ms, got ${c.events[name].length}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return c.events[name];
}

/** Retries `check` (an assertion) every 50 ms until it passes, or rethrows its failure after `timeoutMs`. */
export async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() - started > timeoutMs) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export const texts = (c: { events: Recorded }): string[] => c.events.message.map((m) => m.message.text);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `transport` with some methods replaced; the others are bound to it. */
export function overrideTransport(transport: Transport, overrides: Partial<Transport>): Transport {
  return new Proxy(transport, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof Transport];
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A transport whose acks are lost: envelopes stay queued and are redelivered on reconnect. */
export function withoutAcks(transport: Transport): Transport {
  return overrideTransport(transport, { ack: async () => {} });
}

/** A transport that also appends every envelope it receives (before the client handles it) to `seen`. */
export function recordingReceived(transport: Transport, seen: Envelope[]): Transport {
  return overrideTransport(transport, {
    receive: (options) => {
      const subscription = transport.receive(options);
      return {
        close: () => subscription.close(),
        async *[Symbol.asyncIterator]() {
          for await (const event of subscription) {
            if (event.kind === "envelope") seen.push(event.envelope);
            yield event;
          }
        },
      };
    },
  });
}

/** Records `message` and `sync` events of a client in one list, in arrival order, as `kind:text`. */
export function timeline(c: { client: SwitchboardClient }): string[] {
  const out: string[] = [];
  c.client.on("message", (e) => void out.push(`message:${e.message.text}`));
  c.client.on("sync", (e) => void out.push(`sync:${e.message.text}`));
  return out;
}
