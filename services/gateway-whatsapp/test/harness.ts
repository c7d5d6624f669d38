// Integration harness: a real delivery service (buildApp over a cloned database and a prefixed
// Redis fan-out) and the gateway in front of it, both on port 0, plus native-API helpers.
import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { buildApp as buildDelivery, type AppConfig } from "@switchboard/delivery";
import { testDeliveryConfig } from "@switchboard/delivery/testing";
import { createDeliveryLink, type DeliveryLink } from "@switchboard/delivery-link";
import { createRedisFanout } from "@switchboard/fanout";
import { createClient, type ServiceClient } from "@switchboard/grpc";
import { DirectoryService, KeyService, MessageService, EnvelopeType, whatsapp } from "@switchboard/proto";
import { createDatabase } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import pino from "pino";
import { onTestFinished } from "vitest";
import { buildApp, type GatewayApp } from "../src/app.js";
import { createDevCodeSender } from "../src/codes/code-sender.js";
import type { GatewayLimits } from "../src/domain/limits.js";
import { createWaDatabase } from "../src/storage/database.js";

export const TOKENS = {
  whatsapp: "wa-gw-test-token-0123456789abcdef",
  messenger: "ms-gw-test-token-0123456789abcdef",
} as const;

export const testLog = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

const deliveryConfig = testDeliveryConfig(TOKENS, { INSTANCE_ID: "gw-wa-test" });

/** A delivery instance and the gateway, for one test; everything is closed when it finishes. */
export interface Stack {
  /** The gateway's gRPC address. */
  target: string;
  /** The delivery service's gRPC address. */
  deliveryTarget: string;
  /** Base URL of the dev admin endpoint. */
  adminUrl: string;
  gateway: GatewayApp;
  link: DeliveryLink;
  databaseUrl: string;
  /** Moves the gateway's clock (code and link-code expiry) forward. */
  advanceClock(ms: number): void;
  /** Stops the delivery instance and starts a new one on the same port. */
  restartDelivery(): Promise<void>;
  /** Starts another gateway instance over the same database and delivery service. */
  addGateway(): Promise<{ target: string; gateway: GatewayApp; close(): Promise<void> }>;
}

/**
 * Starts delivery and the gateway over a fresh database clone. `delivery` overrides the delivery
 * service's configuration (e.g. its RATE_* limits).
 */
export async function startStack(
  opts: { limits?: Partial<GatewayLimits>; delivery?: Partial<AppConfig> } = {},
): Promise<Stack> {
  const clone = await cloneTemplateDatabase();
  const deliveryDb = createDatabase({ url: clone.url, poolSize: 10 });
  const prefix = redisTestPrefix();
  const startDelivery = async (port: number) => {
    const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: prefix });
    const app = buildDelivery({
      config: { ...deliveryConfig, ...opts.delivery },
      db: deliveryDb,
      fanout,
      log: testLog,
      collectDefaultMetrics: false,
    });
    const bound = await app.listen({ host: "127.0.0.1", port });
    return {
      port: bound.port,
      stop: async () => {
        await app.close(200);
        await fanout.close();
      },
    };
  };
  let delivery = await startDelivery(0);
  const deliveryTarget = `127.0.0.1:${delivery.port}`;
  let offsetMs = 0;
  const startGateway = async () => {
    const waDb = createWaDatabase({ url: clone.url });
    const link = createDeliveryLink({
      target: deliveryTarget,
      appToken: TOKENS.whatsapp,
      log: testLog,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
    });
    const gateway = buildApp({
      db: waDb,
      link,
      log: testLog,
      codeSender: createDevCodeSender(testLog),
      limits: opts.limits,
      now: () => Date.now() + offsetMs,
    });
    const bound = await gateway.listen({ host: "127.0.0.1", port: 0, adminPort: 0 });
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await gateway.close(500);
      await link.close();
      await waDb.destroy();
    };
    return { gateway, link, close, target: `127.0.0.1:${bound.port}`, adminPort: bound.adminPort };
  };
  const first = await startGateway();
  const others: Array<() => Promise<void>> = [];
  onTestFinished(async () => {
    for (const close of others) await close();
    await first.close();
    await delivery.stop();
    await deliveryDb.destroy();
    await clone.drop();
  });
  return {
    target: first.target,
    deliveryTarget,
    adminUrl: `http://127.0.0.1:${first.adminPort}`,
    gateway: first.gateway,
    link: first.link,
    databaseUrl: clone.url,
    advanceClock: (ms) => void (offsetMs += ms),
    async restartDelivery() {
      await delivery.stop();
      delivery = await startDelivery(Number(deliveryTarget.split(":")[1]));
    },
    async addGateway() {
      const g = await startGateway();
      others.push(g.close);
      return { target: g.target, gateway: g.gateway, close: g.close };
    },
  };
}

export type WaClient = ServiceClient<typeof whatsapp.WhatsAppService>;

/** A native-API client, authenticated with `token` when given; closed when the test finishes. */
export function waClient(target: string, token?: string): WaClient {
  const c = createClient(whatsapp.WhatsAppService, target, {
    metadata: (): Record<string, string> => (token === undefined ? {} : { authorization: `Bearer ${token}` }),
    defaultDeadlineMs: 15_000,
  });
  onTestFinished(() => c.close());
  return c;
}

/** Reads the last code sent to a number from the dev admin endpoint. */
export async function fetchCode(stack: Stack, phone: string): Promise<string> {
  const res = await fetch(`${stack.adminUrl}/admin/codes/${encodeURIComponent(phone)}`);
  if (!res.ok) throw new Error(`admin endpoint answered ${res.status}`);
  return ((await res.json()) as { code: string }).code;
}

let nextPhone = 15550000000 + Math.floor(Math.random() * 90_000) * 100_00;

/** A fresh E.164 number. */
export const newPhone = () => `+${nextPhone++}`;

/** A registered device of the native API. */
export interface WaDevice {
  phone: string;
  jid: string;
  token: string;
  accountId: string;
  registrationId: number;
  client: WaClient;
}

/** Registers a new number through RequestCode / VerifyCode with the code from the admin endpoint. */
export async function registerPhone(stack: Stack, phone = newPhone()): Promise<WaDevice> {
  const open = waClient(stack.target);
  await open.requestCode({ phoneNumber: phone });
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await open.verifyCode({
    phoneNumber: phone,
    code: await fetchCode(stack, phone),
    registrationId,
  });
  return {
    phone,
    jid: r.jid,
    token: r.token,
    accountId: r.accountId,
    registrationId,
    client: waClient(stack.target, r.token),
  };
}

/** Links a companion device to `primary`'s account. */
export async function linkCompanion(stack: Stack, primary: WaDevice): Promise<WaDevice> {
  const { code } = await primary.client.createLinkCode({});
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await waClient(stack.target).linkDevice({ code, registrationId, deviceName: "companion" });
  return { ...primary, jid: r.jid, token: r.token, registrationId, client: waClient(stack.target, r.token) };
}

/** Uploads a minimal, syntactically valid key set (the delivery service checks sizes only). */
export async function uploadDummyKeys(device: WaDevice): Promise<void> {
  const key = (n: number) => new Uint8Array(n).fill(5);
  await device.client.uploadKeys({
    identityKey: key(33),
    signedPreKey: { keyId: 1, publicKey: key(33), signature: key(64) },
    oneTimePreKeys: [{ keyId: 1, publicKey: key(33) }],
    kyberPreKeys: [{ keyId: 1, publicKey: key(1569), signature: key(64) }],
    lastResortKyberPreKey: { keyId: 2, publicKey: key(1569), signature: key(64) },
  });
}

/** An open Chat stream collecting server frames; acknowledges messages unless told not to. */
export function openChat(device: WaDevice, opts: { autoAck?: boolean } = {}) {
  const stream = device.client.chat();
  const frames: whatsapp.ChatResponse[] = [];
  let ended: unknown;
  let done = false;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  const finished = (async () => {
    try {
      for await (const f of stream.responses) {
        frames.push(f);
        if (opts.autoAck !== false && (f.frame.case === "message" || f.frame.case === "receipt")) {
          await stream
            .send({ frame: { case: "ack", value: { ids: [f.frame.value.serverId] } } })
            .catch(() => {});
        }
        notify();
      }
    } catch (err) {
      ended = err;
    }
    done = true;
    notify();
  })();
  onTestFinished(() => stream.cancel());
  const of = <K extends NonNullable<whatsapp.ChatResponse["frame"]["case"]>>(kind: K) =>
    frames
      .filter((f) => f.frame.case === kind)
      .map((f) => f.frame.value as Extract<whatsapp.ChatResponse["frame"], { case: K }>["value"]);
  return {
    stream,
    frames,
    finished,
    get error() {
      return ended;
    },
    get done() {
      return done;
    },
    messages: () => of("message"),
    receipts: () => of("receipt"),
    acks: () => of("sendAck"),
    errors: () => of("error"),
    drained: () => of("queueDrained").length,
    send: (value: OutgoingInit) => stream.send({ frame: { case: "send", value } }),
    ack: (ids: string[]) => stream.send({ frame: { case: "ack", value: { ids } } }),
    /** Resolves when `predicate` holds (checked on every frame), or rejects after `timeoutMs`. */
    async until(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
      if (predicate()) return;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`condition not met within ${timeoutMs} ms (${frames.length} frames)`));
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

type OutgoingInit = MessageInitShape<typeof whatsapp.OutgoingChatSchema>;

/** An OutgoingChat to every listed device of a user, with the text as "ciphertext". */
export function textTo(
  to: { jid: string; devices: { jid: string; registrationId: number }[] },
  text: string,
  id = `m-${randomBytes(6).toString("hex")}`,
): OutgoingInit {
  return {
    id,
    to: to.jid,
    t: BigInt(Date.now()),
    participants: to.devices.map((d) => ({
      jid: d.jid,
      registrationId: d.registrationId,
      kind: whatsapp.MessageKind.MSG,
      ciphertext: Buffer.from(text),
    })),
  };
}

/** The user JID of a device JID ("1555…:2@s.whatsapp.net" → "1555…@s.whatsapp.net"). */
export const userJid = (deviceJid: string) => deviceJid.replace(/:[0-9]+@/, "@");

/** Delivery-API clients with the messenger app credential, to act as a user of another app. */
export function messengerApp(stack: Stack) {
  const metadata = () => ({ authorization: `Bearer ${TOKENS.messenger}` });
  const c = {
    directory: createClient(DirectoryService, stack.deliveryTarget, { metadata }),
    messages: createClient(MessageService, stack.deliveryTarget, { metadata }),
    keys: createClient(KeyService, stack.deliveryTarget, { metadata }),
  };
  onTestFinished(() => {
    for (const x of Object.values(c)) x.close();
  });
  return c;
}

export const text = (b: Uint8Array) => Buffer.from(b).toString();
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export { EnvelopeType };
