// Secrets in logs (issue 8): a short scripted session through all three gateways with every
// process at LOG_LEVEL=debug — register a user on each app with the SDK, send end-to-end-encrypted
// messages around the triangle and receive them — then every line every process wrote is
// searched for every secret and payload of the session: app tokens, access tokens, device
// passwords, each ciphertext (base64, base64url and hex, also its first 24 characters) and each
// plaintext. Zero hits allowed. Device and verification codes are not secrets of this kind (the
// dev code sender logs codes on purpose; DEV_ADMIN is a development mode).
import { randomBytes, randomInt } from "node:crypto";
import { App } from "@switchboard/proto";
import {
  createClient,
  createInstagramTransport,
  createMemoryStore,
  createMessengerTransport,
  createWhatsAppTransport,
  type SwitchboardClient,
  type Transport,
} from "@switchboard/sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SERVICES, startSystem, type System } from "./system.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("secrets in logs", () => {
  let sys: System;
  const secrets = new Map<string, string>(); // needle → what it is
  const opened: { client: SwitchboardClient; transport: Transport }[] = [];

  /** Records a secret under several encodings, skipping needles too short to mean anything. */
  function remember(what: string, value: string | Uint8Array) {
    if (typeof value === "string") {
      if (value.length >= 8) secrets.set(value, what);
      return;
    }
    const b = Buffer.from(value);
    for (const [enc, s] of [
      ["base64", b.toString("base64")],
      ["base64url", b.toString("base64url")],
      ["hex", b.toString("hex")],
    ] as const) {
      if (s.length < 16) continue;
      secrets.set(s, `${what} (${enc})`);
      secrets.set(s.slice(0, 24), `${what} (${enc}, first 24 chars)`);
    }
  }

  /** Wraps a transport so that every device password and every outgoing ciphertext is recorded. */
  function spy<T extends Transport>(t: T): T {
    const setCreds = t.setDeviceCredentials.bind(t);
    t.setDeviceCredentials = (c) => {
      remember("device password", c.password);
      setCreds(c);
    };
    const send = t.sendMessage.bind(t);
    t.sendMessage = (req) => {
      for (const m of req.messages) remember("ciphertext", m.content);
      return send(req);
    };
    return t;
  }

  async function open(transport: Transport) {
    const client = await createClient({
      transport: spy(transport),
      store: createMemoryStore(),
      preKeyBatchSize: 5,
      reconnectDelayMs: { initial: 100, max: 1_000 },
    });
    opened.push({ client, transport });
    return client;
  }

  beforeAll(async () => {
    sys = await startSystem({ logLevel: "debug" });
    for (const [app, token] of Object.entries(sys.tokens)) remember(`${app} app token`, token);
  });

  afterAll(async () => {
    for (const o of opened) {
      await o.client.close().catch(() => undefined);
      await o.transport.close().catch(() => undefined);
    }
    await sys?.stop();
  });

  test("a session through all three gateways at debug level logs no secret, ciphertext or plaintext", async () => {
    const phone = `+1555${String(randomInt(10_000_000)).padStart(7, "0")}`;
    const code = async (p: string) => {
      const res = await fetch(
        `http://127.0.0.1:${sys.ports.whatsappAdmin}/admin/codes/${encodeURIComponent(p)}`,
      );
      return ((await res.json()) as { code: string }).code;
    };
    const waT = createWhatsAppTransport({
      target: `127.0.0.1:${sys.ports.whatsapp}`,
      verificationCode: code,
    });
    const w = await open(waT);
    const wr = await w.registerAccount({ handle: { app: App.WHATSAPP, value: phone }, appToken: "" });

    const msT = createMessengerTransport({ baseUrl: `http://127.0.0.1:${sys.ports.messenger}` });
    const m = await open(msT);
    const mr = await m.registerAccount({ handle: { app: App.MESSENGER, value: "" }, appToken: "" });

    const igT = createInstagramTransport({ baseUrl: `http://127.0.0.1:${sys.ports.instagram}` });
    const i = await open(igT);
    const igName = `sec_${randomBytes(3).toString("hex")}`;
    const ir = await i.registerAccount({ handle: { app: App.INSTAGRAM, value: igName }, appToken: "" });
    // Transports address peers by native handle: each client resolves the others first.
    const msHandle = (await m.getAccount(mr.accountId))?.account?.handle?.value ?? "";
    const handles = [
      { app: App.WHATSAPP, value: phone },
      { app: App.MESSENGER, value: msHandle },
      { app: App.INSTAGRAM, value: igName },
    ];
    for (const c of [w, m, i]) for (const h of handles) await c.resolveHandle(h);

    remember("whatsapp device token", waT.currentSession?.token ?? "");
    remember("messenger access token", msT.accessToken ?? "");
    remember("instagram access token", igT.accessToken ?? "");

    const received: string[] = [];
    for (const c of [w, m, i]) {
      c.on("message", ({ message }) => void received.push(message.text));
      c.start();
    }
    // The Instagram user writes first: a first message *to* it from a stranger would be held as
    // a message request rather than delivered.
    const texts = [
      [w, mr.accountId, `secret-plaintext W→M ${randomBytes(8).toString("hex")}`],
      [i, wr.accountId, `secret-plaintext I→W ${randomBytes(8).toString("hex")}`],
      [i, mr.accountId, `secret-plaintext I→M ${randomBytes(8).toString("hex")}`],
      [m, ir.accountId, `secret-plaintext M→I ${randomBytes(8).toString("hex")}`],
    ] as const;
    for (const [from, to, text] of texts) {
      remember("plaintext", text);
      const r = await from.sendMessage(to, { text });
      expect(r.kind).toBe("sent");
    }
    for (let waited = 0; received.length < texts.length && waited < 45_000; waited += 50) await sleep(50);
    expect(received.sort()).toEqual(texts.map((t) => t[2]).sort());
    // Give the processes a moment to write the lines of the last acks.
    await sleep(500);

    const tokenCount = [...secrets.values()].filter((w) => w.includes("token")).length;
    expect(tokenCount, "the session's tokens were captured").toBeGreaterThanOrEqual(6);
    expect([...secrets.values()].some((w) => w.startsWith("device password"))).toBe(true);
    expect([...secrets.values()].some((w) => w.startsWith("ciphertext"))).toBe(true);

    const lines: Record<string, number> = {};
    const hits: string[] = [];
    for (const name of SERVICES) {
      const log = sys.logs[name].join("");
      lines[name] = log.split("\n").filter(Boolean).length;
      for (const [needle, what] of secrets) if (log.includes(needle)) hits.push(`${name}: ${what}`);
    }
    console.log(
      `secrets scan: ${secrets.size} needles (${[...new Set([...secrets.values()].map((v) => v.replace(/ \(.*/, "")))].join(", ")}) ` +
        `over ${Object.entries(lines)
          .map(([k, n]) => `${k} ${n} lines`)
          .join(", ")}; hits: ${hits.length}`,
    );
    // The scan sees the logs: each process logged at debug level during the session.
    for (const name of SERVICES) expect(lines[name], `${name} wrote log lines`).toBeGreaterThan(5);
    expect(hits).toEqual([]);
  });
});
