import { randomBytes, randomUUID } from "node:crypto";
import { buildApp } from "@switchboard/delivery";
import { createRedisFanout } from "@switchboard/fanout";
import { App, EnvelopeType, type Envelope } from "@switchboard/proto";
import { createDatabase } from "@switchboard/storage";
import { cloneTemplateDatabase, redisTestPrefix, redisUrl } from "@switchboard/testkit";
import pino from "pino";
import { describe, expect, onTestFinished, test } from "vitest";
import { createDeliveryLink, type DeliveryLink } from "../src/index.js";

const TOKEN = "wa-token-0123456789abcdef";
const log = pino({ level: "silent" });

async function backend() {
  const clone = await cloneTemplateDatabase();
  const db = createDatabase({ url: clone.url });
  const prefix = redisTestPrefix();
  onTestFinished(async () => {
    await db.destroy();
    await clone.drop();
  });
  const start = async (port = 0) => {
    const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: prefix });
    const app = buildApp({
      config: {
        APP_TOKENS: [{ app: App.WHATSAPP, providerId: "", token: TOKEN }],
        MAX_CIPHERTEXT_BYTES: 65536,
        QUEUE_TTL_SECONDS: 3600,
        MAX_QUEUE_LENGTH: 1000,
        SEND_BATCH_MAX: 100,
        SEND_LANES: 2,
        ACK_BATCH_MAX: 1000,
        STREAM_POLL_MS: 15000,
        MAX_DEVICES: 6,
        MAX_GROUP_MEMBERS: 100,
        INSTANCE_ID: "link-test",
      },
      db,
      fanout,
      log,
      collectDefaultMetrics: false,
    });
    const bound = await app.listen({ host: "127.0.0.1", port });
    const stop = async () => {
      await app.close(200);
      await fanout.close();
    };
    return { port: bound.port, stop };
  };
  return { start };
}

async function register(link: DeliveryLink, phone: string) {
  const r = await link.directory.registerAccount({
    handle: { app: App.WHATSAPP, value: phone },
    registrationId: 7,
    password: randomBytes(18).toString("base64url"),
  });
  return { accountId: r.account?.id ?? "", deviceId: 1 };
}

function collector() {
  const got: Envelope[] = [];
  let empty = 0;
  let displaced = false;
  return {
    got,
    get empty() {
      return empty;
    },
    get displaced() {
      return displaced;
    },
    listener: {
      onEnvelope: (e: Envelope) => got.push(e),
      onQueueEmpty: () => void empty++,
      onDisplaced: () => void (displaced = true),
    },
  };
}

async function until(p: () => boolean, ms = 10_000) {
  const t0 = Date.now();
  while (!p()) {
    if (Date.now() - t0 > ms) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const msg = (from: { accountId: string }, to: { accountId: string }, text: string) => ({
  sender: { accountId: from.accountId, deviceId: 1 },
  destinationAccountId: to.accountId,
  messages: [{ deviceId: 1, registrationId: 7, type: EnvelopeType.CIPHERTEXT, content: Buffer.from(text) }],
  clientMessageId: randomUUID(),
});

describe("DeliveryLink", () => {
  test("sends, streams and acks many devices over few streams", async () => {
    const b = await backend();
    const d = await b.start();
    onTestFinished(d.stop);
    const link = createDeliveryLink({ target: `127.0.0.1:${d.port}`, appToken: TOKEN, streams: 2, log });
    onTestFinished(() => link.close());
    const users = await Promise.all(
      Array.from({ length: 6 }, (_, i) => register(link, `+1555000${1000 + i}`)),
    );
    const inbox = users.map(() => collector());
    users.forEach((u, i) => link.subscribe(u, (inbox[i] as ReturnType<typeof collector>).listener));
    await until(() => inbox.every((c) => c.empty === 1));
    const results = await Promise.all(
      users.map((u, i) =>
        link.send(msg(u, users[(i + 1) % users.length] as typeof u, `to ${(i + 1) % users.length}`)),
      ),
    );
    expect(results.every((r) => r.result.case === "sent")).toBe(true);
    await until(() => inbox.every((c) => c.got.length === 1));
    inbox.forEach((c, i) => expect(Buffer.from(c.got[0]?.content ?? []).toString()).toBe(`to ${i}`));
    expect(link.subscribedDevices).toBe(6);
  });

  test("reconnects after the delivery instance restarts and re-drains unacknowledged messages", async () => {
    const b = await backend();
    let d = await b.start();
    const port = d.port;
    onTestFinished(() => d.stop());
    const link = createDeliveryLink({
      target: `127.0.0.1:${port}`,
      appToken: TOKEN,
      streams: 1,
      log,
      reconnectMaxMs: 300,
    });
    onTestFinished(() => link.close());
    const alice = await register(link, "+15550002001");
    const bob = await register(link, "+15550002002");
    const inbox = collector();
    const sub = link.subscribe(bob, inbox.listener);
    await until(() => inbox.empty === 1);
    await link.send(msg(alice, bob, "one"));
    await link.send(msg(alice, bob, "two"));
    await until(() => inbox.got.length === 2);
    await sub.ack([inbox.got[0]?.id ?? ""]);
    await new Promise((r) => setTimeout(r, 200));

    await d.stop();
    const failed = await link.send(msg(alice, bob, "while down")).catch((e: unknown) => e);
    expect(failed).toMatchObject({
      reason: expect.stringMatching(/LINK_RECONNECTING|SEND_TIMEOUT|SHUTTING_DOWN/) as unknown,
    });
    d = await b.start(port);
    await until(() => inbox.empty === 2, 15_000);
    // "two" was never acknowledged: delivered again after the reconnect.
    expect(inbox.got.map((e) => Buffer.from(e.content).toString())).toEqual(["one", "two", "two"]);
    const r = await link.send(msg(alice, bob, "three"));
    expect(r.result.case).toBe("sent");
    await until(() => inbox.got.length === 4);
  });
});

describe("DeliveryLink subscriptions", () => {
  test("a resubscribed device keeps its new subscription when the old handle closes", async () => {
    const b = await backend();
    const d = await b.start();
    onTestFinished(d.stop);
    const link = createDeliveryLink({ target: `127.0.0.1:${d.port}`, appToken: TOKEN, streams: 1, log });
    onTestFinished(() => link.close());
    const alice = await register(link, "+15550003001");
    const bob = await register(link, "+15550003002");
    const first = collector();
    const old = link.subscribe(bob, first.listener);
    await until(() => first.empty === 1);
    const second = collector();
    link.subscribe(bob, second.listener);
    expect(first.displaced).toBe(true);
    await old.close();
    await until(() => second.empty === 1);
    await link.send(msg(alice, bob, "still here"));
    await until(() => second.got.length === 1);
    // Acks through a closed handle still remove the message.
    await old.ack([second.got[0]?.id ?? ""]);
    const again = collector();
    link.subscribe(bob, again.listener);
    await until(() => again.empty >= 1);
    expect(again.got).toHaveLength(0);
  });
});
