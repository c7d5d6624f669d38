// The whole system in this process on embedded defaults (PGlite in a temporary DATA_DIR, the
// in-process fan-out bus): the demo completes against it, and a restart on the same DATA_DIR
// keeps a message queued for an offline device.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@switchboard/logger";
import { App } from "@switchboard/proto";
import {
  createClient,
  createMemoryStore,
  createMessengerTransport,
  createWhatsAppTransport,
  type ClientStore,
  type Transport,
  type WhatsAppSession,
} from "@switchboard/sdk";
import { freePort } from "@switchboard/testkit/service-process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadConfig, type StandaloneConfig } from "../src/config.js";
import { runDemo } from "../src/demo-run.js";
import { startSystem, type System } from "../src/system.js";

const log = createLogger({ service: "standalone-test", version: "0.1.0", level: "error" });

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("the standalone system on embedded defaults", () => {
  let dataDir: string;
  let config: StandaloneConfig;
  let system: System | undefined;
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "switchboard-standalone-"));
    // An explicit environment: no DATABASE_URL or REDIS_URL, whatever this process was given.
    config = loadConfig({
      DATA_DIR: dataDir,
      HOST: "127.0.0.1",
      DELIVERY_GRPC_PORT: String(await freePort()),
      DELIVERY_METRICS_PORT: String(await freePort()),
      WHATSAPP_GRPC_PORT: String(await freePort()),
      WHATSAPP_ADMIN_PORT: String(await freePort()),
      MESSENGER_HTTP_PORT: String(await freePort()),
      INSTAGRAM_HTTP_PORT: String(await freePort()),
      SHUTDOWN_GRACE_MS: "2000",
    });
    system = await startSystem(config, log);
  });

  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await system?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("runs the demo: three apps, a message request, a group and an offline device catching up", async () => {
    if (!system) throw new Error("the system did not start");
    expect(system.endpoints).toMatchObject({ embeddedDatabase: true, embeddedFanout: true });
    let text = "";
    const result = await runDemo(system.endpoints, { write: (chunk: string) => void (text += chunk) });

    expect(result).toMatchObject({ messages: 9, deliveries: 19 });
    expect(result.ciphertextBytes).toBeGreaterThan(0);
    for (const step of [
      "1. Three people, three apps",
      "2. One to one, across apps",
      "3. A message request on Instagram",
      "4. A group across the apps",
      "5. Bao's laptop comes online and catches up, in order",
      "Done: 9 messages, 19 decryptions on 4 devices.",
    ])
      expect(text).toContain(step);
    // Every decryption is shown next to the envelope the server delivered for it.
    const lines = text.split("\n");
    const decrypted = lines.filter((l) => / (decrypts|gets its own copy) /.test(l));
    const delivered = lines.filter((l) => l.includes("server delivered "));
    expect(decrypted).toHaveLength(19);
    expect(delivered).toHaveLength(19);
    for (const line of delivered)
      expect(line).toMatch(
        /server delivered {2}(PREKEY_MESSAGE|CIPHERTEXT|SENDER_KEY_MESSAGE), \d+ bytes: ([0-9a-f]{2} )+…$/,
      );
    expect(text).toMatch(/requests folder lists thread \d+ from whatsapp:\+1555\d{7}/);
  });

  test("a restart of the embedded system keeps its messages", async () => {
    if (!system) throw new Error("the system did not start");
    const endpoints = system.endpoints;
    const code = async (phone: string) => {
      const res = await fetch(`${endpoints.whatsappAdmin}/admin/codes/${encodeURIComponent(phone)}`);
      return ((await res.json()) as { code: string }).code;
    };
    const open = async (transport: Transport, store: ClientStore = createMemoryStore()) => {
      const client = await createClient({ transport, store, preKeyBatchSize: 10 });
      cleanups.push(async () => {
        await client.close();
        await transport.close();
      });
      return { client, store };
    };
    const openWa = async (
      target: string,
      verificationCode: (phone: string) => Promise<string>,
      session?: WhatsAppSession,
      store?: ClientStore,
    ) => {
      const sessions: WhatsAppSession[] = [];
      const transport = createWhatsAppTransport({
        target,
        verificationCode,
        session,
        onSession: (s) => void sessions.push(s),
      });
      return { ...(await open(transport, store)), transport, sessions };
    };

    // A WhatsApp-style recipient with a linked companion (a link code), both offline (never
    // started) before the restart: the gateway's registration and linking work on the one-connection
    // embedded database.
    const phone = `+1555${String(Math.floor(Math.random() * 10_000_000)).padStart(7, "0")}`;
    const adaPhone = await openWa(endpoints.whatsapp, code);
    const adaAccount = await adaPhone.client.registerAccount({
      handle: { app: App.WHATSAPP, value: phone },
      appToken: "",
    });
    const adaLaptop = await openWa(endpoints.whatsapp, code);
    const { code: linkCode } = await adaPhone.transport.createLinkCode();
    await adaLaptop.client.registerDevice({ accountId: adaAccount.accountId, appToken: linkCode });
    // A Messenger-style sender.
    const bao = await open(createMessengerTransport({ baseUrl: endpoints.messenger }));
    await bao.client.registerAccount({ handle: { app: App.MESSENGER, value: "" }, appToken: "" });
    const sent = await bao.client.sendMessage(adaAccount.accountId, { text: "queued before the restart" });
    expect(sent.kind).toBe("sent");
    for (const d of [adaPhone, adaLaptop]) {
      await d.client.close();
      await d.transport.close();
    }

    await system.close();
    system = undefined;
    system = await startSystem(config, log);
    expect(system.endpoints.appTokens).toEqual(endpoints.appTokens);

    // Both devices come back with their saved sessions and stores: the queued message is there.
    const target = system.endpoints.whatsapp;
    const again = [
      await openWa(target, code, adaPhone.sessions[0], adaPhone.store),
      await openWa(target, code, adaLaptop.sessions[0], adaLaptop.store),
    ];
    const texts = again.map(() => [] as string[]);
    const drained = again.map(() => false);
    again.forEach((d, i) => {
      d.client.on("message", ({ message }) => void texts[i]?.push(message.text));
      d.client.on("queueEmpty", () => void (drained[i] = true));
      d.client.start();
    });
    await waitFor("the queued message after the restart", () =>
      again.every((_, i) => drained[i] && (texts[i]?.length ?? 0) >= 1),
    );
    await bao.client.sendMessage(adaAccount.accountId, { text: "sent after the restart" });
    await waitFor("the message sent after the restart", () => texts.every((t) => t.length >= 2));
    expect(texts).toEqual([
      ["queued before the restart", "sent after the restart"],
      ["queued before the restart", "sent after the restart"],
    ]);
  });
});
