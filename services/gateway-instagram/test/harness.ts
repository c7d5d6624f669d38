// Integration harness: a real delivery service (buildApp over a cloned database and a prefixed
// Redis fan-out) on port 0, and the Instagram-style gateway over the same database on port 0.
import { randomUUID } from "node:crypto";
import { buildApp as buildDelivery, type AppConfig as DeliveryConfig } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createDeliveryLink, type DeliveryLink } from "@switchboard/delivery-link";
import { createRedisFanout } from "@switchboard/fanout";
import { createDatabase } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import type { Kysely } from "kysely";
import { pino } from "pino";
import { onTestFinished } from "vitest";
import { buildApp, type GatewayApp } from "../src/app.js";
import type { IgDatabase } from "../src/storage/schema.js";

export const TOKENS = {
  instagram: "ig-test-token-0123456789abcdef",
  whatsapp: "wa-test-token-0123456789abcdef",
} as const;

const deliveryConfig = testDeliveryConfig(TOKENS, { INSTANCE_ID: "ig-test" });

export const testLog = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** A running gateway instance. */
export interface Gateway {
  app: GatewayApp;
  link: DeliveryLink;
  url: string;
  close(): Promise<void>;
}

/** The test's delivery service, database and gateway(s); everything is stopped when the test ends. */
export interface Stack {
  db: Kysely<IgDatabase>;
  deliveryTarget: string;
  gateway: Gateway;
  /** Starts another gateway instance over the same database and delivery service. */
  startGateway(): Promise<Gateway>;
  /** Stops the delivery service and starts a new instance on the same port. */
  restartDelivery(): Promise<void>;
}

/** Starts the stack; `opts.delivery` overrides the delivery service's configuration (e.g. its RATE_* limits). */
export async function startStack(opts: { delivery?: Partial<DeliveryConfig> } = {}): Promise<Stack> {
  const clone = await cloneTemplateDatabase();
  const db = createDatabase({ url: clone.url, poolSize: 10 });
  const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: redisTestPrefix() });
  const newDelivery = () =>
    buildDelivery({
      config: { ...deliveryConfig, ...opts.delivery },
      db,
      fanout,
      log: testLog,
      collectDefaultMetrics: false,
    });
  let delivery = newDelivery();
  const { port } = await delivery.listen({ host: "127.0.0.1", port: 0 });
  const deliveryTarget = `127.0.0.1:${port}`;
  const igDb = db as unknown as Kysely<IgDatabase>;
  const gateways: Gateway[] = [];

  async function startGateway(): Promise<Gateway> {
    const link = createDeliveryLink({ target: deliveryTarget, appToken: TOKENS.instagram, log: testLog });
    const app = buildApp({
      config: { MAX_BODY_BYTES: 4 * 1024 * 1024 },
      db: igDb,
      link,
      log: testLog,
      tuning: { releasePollMs: 200 },
    });
    const gwPort = await app.listen({ host: "127.0.0.1", port: 0 });
    let closed = false;
    const gw: Gateway = {
      app,
      link,
      url: `http://127.0.0.1:${gwPort}`,
      async close() {
        if (closed) return;
        closed = true;
        await app.close();
        await link.close();
      },
    };
    gateways.push(gw);
    return gw;
  }

  onTestFinished(async () => {
    for (const g of gateways) await g.close();
    await delivery.close(1000);
    await fanout.close();
    await db.destroy();
    await clone.drop();
  });
  async function restartDelivery() {
    await delivery.close(500);
    delivery = newDelivery();
    await delivery.listen({ host: "127.0.0.1", port });
  }
  return { db: igDb, deliveryTarget, gateway: await startGateway(), startGateway, restartDelivery };
}

/** A JSON response: status, body and headers. */
export interface Res<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

/** Calls the gateway's JSON API. */
export async function api<T = Record<string, unknown>>(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown } = {},
): Promise<Res<T>> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as T, headers: res.headers };
}

/** A user signed up through the API: account id, username and the first device's token. */
export interface IgUser {
  accountId: string;
  username: string;
  token: string;
  registrationId: number;
}

export async function signUp(base: string, username = `u_${randomUUID().slice(0, 8)}`): Promise<IgUser> {
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await api<{ account: { account_id: string }; access_token: string }>(
    base,
    "POST",
    "/v1/accounts",
    {
      body: { username, registration_id: registrationId, password: "correct horse battery staple" },
    },
  );
  if (r.status !== 201) throw new Error(`sign-up failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { accountId: r.body.account.account_id, username, token: r.body.access_token, registrationId };
}

/** One event read from /v1/direct/events. */
export interface ReadEvent {
  event: string;
  id?: string;
  data: Record<string, unknown>;
}

/** An open event stream collecting its events. */
export interface EventStream {
  events: ReadEvent[];
  items(): ReadEvent[];
  until(predicate: (events: ReadEvent[]) => boolean, timeoutMs?: number): Promise<void>;
  readonly ended: boolean;
  close(): void;
}

/** Opens /v1/direct/events and collects its events (closed when the test finishes). */
export async function openEvents(
  base: string,
  token: string,
  opts: { viaQuery?: boolean } = {},
): Promise<EventStream> {
  const controller = new AbortController();
  const url = opts.viaQuery
    ? `${base}/v1/direct/events?access_token=${encodeURIComponent(token)}`
    : `${base}/v1/direct/events`;
  const res = await fetch(url, {
    headers: opts.viaQuery ? {} : { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  if (res.status !== 200 || res.body === null)
    throw new Error(`events failed: ${res.status} ${await res.text()}`);
  const events: ReadEvent[] = [];
  let ended = false;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const ev: Partial<ReadEvent> = {};
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) ev.event = line.slice(7);
            else if (line.startsWith("id: ")) ev.id = line.slice(4);
            else if (line.startsWith("data: "))
              ev.data = JSON.parse(line.slice(6)) as Record<string, unknown>;
          }
          if (ev.event && ev.data) events.push(ev as ReadEvent);
        }
      }
    } catch {
      // Aborted by close().
    }
    ended = true;
  })();
  const stream: EventStream = {
    events,
    items: () => events.filter((e) => e.event === "item"),
    async until(predicate, timeoutMs = 10_000) {
      const started = Date.now();
      while (!predicate(events)) {
        if (Date.now() - started > timeoutMs)
          throw new Error(
            `condition not met within ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => e.event))}`,
          );
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    get ended() {
      return ended;
    },
    close: () => controller.abort(),
  };
  onTestFinished(() => stream.close());
  return stream;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const b64 = (text: string) => Buffer.from(text).toString("base64");
export const unb64 = (text: unknown) => Buffer.from(String(text), "base64").toString();
