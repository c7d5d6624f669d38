// Integration harness: a real delivery service (buildApp over a cloned database and a prefixed Redis
// fan-out) on port 0, and the Messenger-style gateway on port 0 over the same database.
import { randomBytes } from "node:crypto";
import { buildApp as buildDelivery, type AppConfig as DeliveryConfig } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createDeliveryLink, type DeliveryLink } from "@switchboard/delivery-link";
import { createRedisFanout } from "@switchboard/fanout";
import { App, type Envelope } from "@switchboard/proto";
import { createDatabase } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import type { Kysely } from "kysely";
import pino from "pino";
import { onTestFinished } from "vitest";
import WebSocket from "ws";
import { buildApp, type GatewayApp } from "../src/app.js";
import type { EnvelopeEvent } from "../src/domain/translate.js";
import { createGatewayDatabase } from "../src/storage/database.js";
import type { GatewayDatabase } from "../src/storage/schema.js";

export const TOKENS = {
  whatsapp: "wa-token-0123456789abcdef",
  messenger: "ms-token-0123456789abcdef",
  instagram: "ig-token-0123456789abcdef",
} as const;

export const testLog = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

const deliveryConfig = testDeliveryConfig(TOKENS, { INSTANCE_ID: "gwms-test" });

/** A cloned database with the delivery and gateway schemas and a Redis prefix; dropped after the test. */
export async function createBackend() {
  const clone = await cloneTemplateDatabase();
  const deliveryDb = createDatabase({ url: clone.url, poolSize: 10 });
  const gatewayDb = createGatewayDatabase({ url: clone.url, poolSize: 4 });
  const prefix = redisTestPrefix();
  onTestFinished(async () => {
    await gatewayDb.destroy();
    await deliveryDb.destroy();
    await clone.drop();
  });
  return { deliveryDb, gatewayDb, prefix };
}

export type Backend = Awaited<ReturnType<typeof createBackend>>;

/**
 * Starts a delivery instance (on `port`, or any free one); stopped when the test finishes.
 * `config` overrides the delivery service's configuration (e.g. its RATE_* limits).
 */
export async function startDelivery(backend: Backend, port = 0, config: Partial<DeliveryConfig> = {}) {
  const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: backend.prefix });
  const app = buildDelivery({
    config: { ...deliveryConfig, ...config },
    db: backend.deliveryDb,
    fanout,
    log: testLog,
    collectDefaultMetrics: false,
  });
  const bound = await app.listen({ host: "127.0.0.1", port });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await app.close(500);
    await fanout.close();
  };
  onTestFinished(stop);
  return { port: bound.port, target: `127.0.0.1:${bound.port}`, stop };
}

export interface Gateway {
  app: GatewayApp;
  link: DeliveryLink;
  /** `http://127.0.0.1:<port>` */
  url: string;
  close(): Promise<void>;
}

/** Starts the gateway on a free port, linked to `target`; closed when the test finishes. */
export async function startGateway(
  target: string,
  db: Kysely<GatewayDatabase>,
  opts: { heartbeatMs?: number; maxBodyBytes?: number } = {},
): Promise<Gateway> {
  const link = createDeliveryLink({
    target,
    appToken: TOKENS.messenger,
    streams: 2,
    log: testLog,
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
  });
  const app = await buildApp({
    config: { MAX_BODY_BYTES: opts.maxBodyBytes ?? 1024 * 1024, WS_HEARTBEAT_MS: opts.heartbeatMs ?? 30_000 },
    db,
    link,
    log: testLog,
  });
  const address = await app.http.listen({ host: "127.0.0.1", port: 0 });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await app.close();
    await link.close();
  };
  onTestFinished(close);
  return { app, link, url: address, close };
}

/** A full backend: delivery (with `opts.delivery` overriding its configuration) and one gateway. */
export async function startStack(opts: { delivery?: Partial<DeliveryConfig> } = {}) {
  const backend = await createBackend();
  const delivery = await startDelivery(backend, 0, opts.delivery);
  const gateway = await startGateway(delivery.target, backend.gatewayDb);
  return { backend, delivery, gateway };
}

/** Calls the gateway's HTTP API; resolves with status and parsed JSON body. */
export async function api<T = Record<string, unknown>>(
  gw: Gateway,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: {
      ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }),
      ...(opts.body === undefined ? {} : { "content-type": "application/json" }),
      ...opts.headers,
    },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as T, headers: res.headers };
}

export interface TestUser {
  userId: string;
  accountId: string;
  deviceId: number;
  registrationId: number;
  token: string;
}

const randomRegistrationId = () => 1 + Math.floor(Math.random() * 16000);

interface CredentialBody {
  user: { account_id: string; id: string };
  device: { device_id: number; registration_id: number };
  access_token: string;
}

/** Signs a user up through the gateway (primary device). */
export async function signup(gw: Gateway): Promise<TestUser> {
  const r = await api<CredentialBody>(gw, "POST", "/v1/signup", {
    body: { registration_id: randomRegistrationId(), device_name: "test" },
  });
  if (r.status !== 201) throw new Error(`signup failed: ${r.status} ${JSON.stringify(r.body)}`);
  return {
    userId: r.body.user.id,
    accountId: r.body.user.account_id,
    deviceId: r.body.device.device_id,
    registrationId: r.body.device.registration_id,
    token: r.body.access_token,
  };
}

/** Adds a device to `user` through the gateway. */
export async function addDevice(gw: Gateway, user: TestUser): Promise<TestUser> {
  const r = await api<CredentialBody>(gw, "POST", "/v1/devices", {
    token: user.token,
    body: { registration_id: randomRegistrationId() },
  });
  if (r.status !== 201) throw new Error(`add device failed: ${r.status} ${JSON.stringify(r.body)}`);
  return {
    ...user,
    deviceId: r.body.device.device_id,
    registrationId: r.body.device.registration_id,
    token: r.body.access_token,
  };
}

/** A WebSocket event as the test sees it. */
export type StreamEvent =
  | EnvelopeEvent
  | { type: "queue_empty" }
  | { type: "displaced" }
  | { type: "pong" }
  | { type: "error"; problem: { reason: string; status: number } }
  | {
      type: "send_result";
      ref: string;
      result?: Record<string, unknown>;
      problem?: { reason: string; status: number; [member: string]: unknown };
    };

/** A device's WebSocket, collecting events; acks messages automatically unless told not to. */
export async function openStream(
  gw: Gateway,
  device: { token: string },
  opts: { autoAck?: boolean; window?: number; viaQuery?: boolean } = {},
) {
  const query = new URLSearchParams();
  if (opts.viaQuery === true) query.set("access_token", device.token);
  if (opts.window !== undefined) query.set("window", String(opts.window));
  const url = `${gw.url.replace(/^http/, "ws")}/v1/stream${query.size > 0 ? `?${query.toString()}` : ""}`;
  const socket = new WebSocket(url, {
    headers: opts.viaQuery === true ? {} : { authorization: `Bearer ${device.token}` },
  });
  const events: StreamEvent[] = [];
  let closeCode: number | undefined;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  socket.on("message", (data: Buffer) => {
    const event = JSON.parse(data.toString("utf8")) as StreamEvent;
    events.push(event);
    if (opts.autoAck !== false && (event.type === "message" || event.type === "delivery"))
      socket.send(JSON.stringify({ type: "ack", ids: [event.server_id] }));
    notify();
  });
  socket.on("close", (code: number) => {
    closeCode = code;
    notify();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
    socket.once("unexpected-response", (_req, res) =>
      reject(new Error(`upgrade refused: ${res.statusCode}`)),
    );
  });
  onTestFinished(() => socket.terminate());
  const messages = () => events.filter((e): e is EnvelopeEvent & { type: "message" } => e.type === "message");
  return {
    socket,
    events,
    messages,
    deliveries: () => events.filter((e): e is EnvelopeEvent & { type: "delivery" } => e.type === "delivery"),
    /** The send_result events, by ref. */
    results: () =>
      new Map(
        events
          .filter((e): e is Extract<StreamEvent, { type: "send_result" }> => e.type === "send_result")
          .map((e) => [e.ref, e]),
      ),
    get closeCode() {
      return closeCode;
    },
    send: (frame: unknown) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
    ack: (ids: string[]) => socket.send(JSON.stringify({ type: "ack", ids })),
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.readyState === WebSocket.CLOSED) return resolve();
        socket.once("close", () => resolve());
        socket.close();
      }),
    /** Resolves when `predicate` holds (checked on every event), or rejects after `timeoutMs`. */
    async until(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
      if (predicate()) return;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `condition not met within ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => e.type))}`,
            ),
          );
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

/** A fake ciphertext body (the gateway never parses it). */
export const fakeBody = (text: string) => Buffer.from(text).toString("base64");

/** Decodes an event body back to the fake text. */
export const textOf = (e: { body?: string }) => Buffer.from(e.body ?? "", "base64").toString("utf8");

/** Random password for accounts registered directly with the delivery service. */
export const randomPassword = () => randomBytes(18).toString("base64url");

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The WhatsApp-style side, played through the delivery API with the WhatsApp app credential (as
 * the WhatsApp gateway would): registers users and reads their devices' queues.
 */
export function whatsappSide(target: string) {
  const link = createDeliveryLink({ target, appToken: TOKENS.whatsapp, streams: 1, log: testLog });
  onTestFinished(() => link.close());
  let phone = 15550000000 + Math.floor(Math.random() * 1_000_000) * 100;
  return {
    link,
    async register() {
      const handle = `+${phone++}`;
      const r = await link.directory.registerAccount({
        handle: { app: App.WHATSAPP, value: handle },
        registrationId: 4242,
        password: randomPassword(),
      });
      return { accountId: r.account?.id ?? "", deviceId: 1, registrationId: 4242, phone: handle };
    },
    /** Collects a device's envelopes (acknowledging each). */
    receive(device: { accountId: string; deviceId: number }) {
      const got: Envelope[] = [];
      const sub = link.subscribe(device, {
        onEnvelope: (e) => {
          got.push(e);
          void sub.ack([e.id]);
        },
        onQueueEmpty: () => undefined,
        onDisplaced: () => undefined,
      });
      onTestFinished(() => sub.close());
      return {
        got,
        async until(n: number, timeoutMs = 10_000) {
          const deadline = Date.now() + timeoutMs;
          while (got.length < n) {
            if (Date.now() > deadline) throw new Error(`expected ${n} envelopes, got ${got.length}`);
            await sleep(20);
          }
        },
      };
    },
  };
}
