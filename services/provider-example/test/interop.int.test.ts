// The issue-10 "done when" test for third-party providers: the delivery service, the three
// gateways and Acme Chat (the reference provider) as separate processes on real PostgreSQL and
// Redis. The provider is registered with the `provider` CLI; an Acme user (SDK over the delivery
// API, libsignal E2EE) and one user of each of our apps (SDK over each gateway's native API)
// exchange messages one to one and in a four-member group. Before our users opt in, the Acme user
// can neither find nor message nor group them; afterwards every recipient sees Acme messages
// marked as third-party with the provider id, whatever gateway it uses.
import { execFile } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { isAppError } from "@switchboard/errors";
import { App } from "@switchboard/proto";
import {
  createClient,
  createInstagramTransport,
  createMemoryStore,
  createMessengerTransport,
  createWhatsAppTransport,
  type ClientEvents,
  type SwitchboardClient,
  type Transport,
} from "@switchboard/sdk";
import { cloneTemplateDatabase, redisUrl, type DatabaseClone } from "@switchboard/testkit";
import {
  freePort,
  httpReady,
  startServiceProcess,
  tcpReady,
  type ServiceProcess,
} from "@switchboard/testkit/service-process";
import { createDatabase } from "@switchboard/storage";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAcmeTransport } from "../src/acme-transport.js";

const serviceDir = (name: string) => fileURLToPath(new URL(`../../${name}/`, import.meta.url));
const appToken = (app: string) => `interop-${app}-${randomBytes(12).toString("hex")}`;
const SOURCE = ["--conditions=switchboard-source", "--import", "tsx"];
const PROVIDER = "acme";

type Key = "W" | "M" | "I" | "A";

interface User {
  key: Key;
  client: SwitchboardClient;
  transport: Transport;
  accountId: string;
  handle: { app: App; value: string; providerId?: string };
  messages: ClientEvents["message"][];
  queueEmpty: number;
  errors: ClientEvents["error"][];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, condition: () => boolean, diagnose: () => string, timeoutMs = 45_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${diagnose()}`);
    await sleep(25);
  }
}

describe("a third-party provider and our three apps, as separate processes", () => {
  const processes: ServiceProcess[] = [];
  let clone: DatabaseClone | undefined;
  const users = {} as Record<Key, User>;
  const nonce = randomBytes(3).toString("hex");
  let ports: Record<
    "delivery" | "metrics" | "whatsapp" | "admin" | "messenger" | "instagram" | "acme",
    number
  >;
  let providerToken = "";
  let groupId = "";
  /** Every message text sent (and refused) in this run. */
  const texts: string[] = [];

  const started = async (p: Promise<ServiceProcess>) => {
    const proc = await p;
    processes.push(proc);
    return proc;
  };

  const nameOf = (accountId: string) =>
    Object.values(users).find((u) => u.accountId === accountId)?.key ?? `unknown ${accountId}`;
  const lines = (u: User) =>
    u.messages.map(
      (m) =>
        `${nameOf(m.meta.sender.accountId)}${m.meta.groupId ? " in group" : ""}` +
        `${m.meta.sourceApp === App.THIRD_PARTY ? ` [third-party ${m.meta.sourceProviderId}]` : ""}: ${m.message.text}`,
    );
  const diagnose = () =>
    Object.values(users)
      .map(
        (u) =>
          `${u.key}: ${JSON.stringify(lines(u))} errors ${JSON.stringify(u.errors.map((e) => `${e.context}: ${String(e.error)}`))}`,
      )
      .join("\n");

  async function open(key: Key, transport: Transport): Promise<User> {
    const client = await createClient({
      transport,
      store: createMemoryStore(),
      preKeyBatchSize: 10,
      reconnectDelayMs: { initial: 100, max: 1_000 },
    });
    const u: User = {
      key,
      client,
      transport,
      accountId: "",
      handle: { app: App.UNSPECIFIED, value: "" },
      messages: [],
      queueEmpty: 0,
      errors: [],
    };
    client.on("message", (e) => void u.messages.push(e));
    client.on("queueEmpty", () => void (u.queueEmpty += 1));
    client.on("error", (e) => void u.errors.push(e));
    users[key] = u;
    return u;
  }

  async function send(from: Key, to: Key): Promise<string> {
    const text = `interop-${nonce} ${from}→${to}`;
    texts.push(text);
    const r = await users[from].client.sendMessage(users[to].accountId, { text });
    expect({ from, to, kind: r.kind }).toEqual({ from, to, kind: "sent" });
    return text;
  }

  beforeAll(async () => {
    clone = await cloneTemplateDatabase();
    ports = {
      delivery: await freePort(),
      metrics: await freePort(),
      whatsapp: await freePort(),
      admin: await freePort(),
      messenger: await freePort(),
      instagram: await freePort(),
      acme: await freePort(),
    };
    const tokens = {
      whatsapp: appToken("whatsapp"),
      messenger: appToken("messenger"),
      instagram: appToken("instagram"),
    };
    const common = { DATABASE_URL: clone.url, LOG_LEVEL: "info", SHUTDOWN_GRACE_MS: "5000" };
    await started(
      startServiceProcess({
        name: "delivery",
        cwd: serviceDir("delivery"),
        env: {
          ...common,
          REDIS_URL: redisUrl(),
          // Only our apps are static: the provider comes from the registry (the CLI below).
          APP_TOKENS: Object.entries(tokens)
            .map(([app, token]) => `${app}=${token}`)
            .join(","),
          GRPC_HOST: "127.0.0.1",
          GRPC_PORT: String(ports.delivery),
          METRICS_PORT: String(ports.metrics),
          INSTANCE_ID: "interop-delivery",
        },
        ready: httpReady(`http://127.0.0.1:${ports.metrics}/healthz`),
        readyTimeoutMs: 90_000,
      }),
    );
    const cli = await promisify(execFile)(
      process.execPath,
      [...SOURCE, "src/provider-cli.ts", "add", PROVIDER, "--name", "Acme Chat"],
      { cwd: serviceDir("delivery"), env: { ...process.env, DATABASE_URL: clone.url } },
    );
    providerToken = /^(sbp_\S+)$/m.exec(cli.stdout)?.[1] ?? "";
    expect(providerToken).toMatch(/^sbp_[A-Za-z0-9_-]{43}$/);

    const gateway = { ...common, DELIVERY_TARGET: `127.0.0.1:${ports.delivery}`, METRICS_PORT: "0" };
    await Promise.all([
      started(
        startServiceProcess({
          name: "gateway-whatsapp",
          cwd: serviceDir("gateway-whatsapp"),
          env: {
            ...gateway,
            DELIVERY_APP_TOKEN: tokens.whatsapp,
            GRPC_HOST: "127.0.0.1",
            GRPC_PORT: String(ports.whatsapp),
            DEV_ADMIN: "true",
            ADMIN_PORT: String(ports.admin),
          },
          ready: async () => (await tcpReady(ports.whatsapp)()) && (await tcpReady(ports.admin)()),
          readyTimeoutMs: 90_000,
        }),
      ),
      started(
        startServiceProcess({
          name: "gateway-messenger",
          cwd: serviceDir("gateway-messenger"),
          env: {
            ...gateway,
            DELIVERY_APP_TOKEN: tokens.messenger,
            HTTP_HOST: "127.0.0.1",
            HTTP_PORT: String(ports.messenger),
          },
          ready: httpReady(`http://127.0.0.1:${ports.messenger}/healthz`),
          readyTimeoutMs: 90_000,
        }),
      ),
      started(
        startServiceProcess({
          name: "gateway-instagram",
          cwd: serviceDir("gateway-instagram"),
          env: {
            ...gateway,
            DELIVERY_APP_TOKEN: tokens.instagram,
            HTTP_HOST: "127.0.0.1",
            HTTP_PORT: String(ports.instagram),
          },
          ready: httpReady(`http://127.0.0.1:${ports.instagram}/healthz`),
          readyTimeoutMs: 90_000,
        }),
      ),
      started(
        startServiceProcess({
          name: "provider-example",
          cwd: serviceDir("provider-example"),
          env: {
            LOG_LEVEL: "info",
            HTTP_HOST: "127.0.0.1",
            HTTP_PORT: String(ports.acme),
            DELIVERY_TARGET: `127.0.0.1:${ports.delivery}`,
            PROVIDER_ID: PROVIDER,
            PROVIDER_TOKEN: providerToken,
          },
          ready: httpReady(`http://127.0.0.1:${ports.acme}/healthz`),
          readyTimeoutMs: 90_000,
        }),
      ),
    ]);
  });

  afterAll(async () => {
    for (const u of Object.values(users)) {
      await u.client.close().catch(() => undefined);
      await u.transport.close().catch(() => undefined);
    }
    await Promise.all(processes.map((p) => p.stop()));
    await clone?.drop();
  });

  test("registers an Acme Chat user through Acme's API and one user on each of our apps", async () => {
    const phone = `+1555${String(randomInt(10_000_000)).padStart(7, "0")}`;
    const code = async (p: string) => {
      const res = await fetch(`http://127.0.0.1:${ports.admin}/admin/codes/${encodeURIComponent(p)}`);
      return ((await res.json()) as { code: string }).code;
    };
    const w = await open(
      "W",
      createWhatsAppTransport({ target: `127.0.0.1:${ports.whatsapp}`, verificationCode: code }),
    );
    w.handle = { app: App.WHATSAPP, value: phone };
    w.accountId = (await w.client.registerAccount({ handle: w.handle, appToken: "" })).accountId;

    const m = await open("M", createMessengerTransport({ baseUrl: `http://127.0.0.1:${ports.messenger}` }));
    m.accountId = (
      await m.client.registerAccount({ handle: { app: App.MESSENGER, value: "" }, appToken: "" })
    ).accountId;
    m.handle = {
      app: App.MESSENGER,
      value: (await m.client.getAccount(m.accountId))?.account?.handle?.value ?? "",
    };

    const i = await open("I", createInstagramTransport({ baseUrl: `http://127.0.0.1:${ports.instagram}` }));
    i.handle = { app: App.INSTAGRAM, value: `ig_${nonce}` };
    i.accountId = (await i.client.registerAccount({ handle: i.handle, appToken: "" })).accountId;

    const a = await open(
      "A",
      createAcmeTransport({
        acmeUrl: `http://127.0.0.1:${ports.acme}`,
        target: `127.0.0.1:${ports.delivery}`,
      }),
    );
    a.handle = { app: App.THIRD_PARTY, providerId: PROVIDER, value: `wile${nonce}` };
    const registered = await a.client.registerAccount({ handle: a.handle, appToken: "" });
    a.accountId = registered.accountId;
    expect(a.accountId).toMatch(/^[0-9a-f-]{36}$/);
    // Our users see the Acme user as an account of provider acme.
    const seen = await w.client.resolveHandle(a.handle);
    expect(seen?.account?.handle).toMatchObject({ app: App.THIRD_PARTY, providerId: PROVIDER });

    // Bad input at Acme's API is a problem document, and registers nothing.
    const signup = async (body: string) => {
      const res = await fetch(`http://127.0.0.1:${ports.acme}/v1/signup`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      return {
        status: res.status,
        type: res.headers.get("content-type"),
        reason: ((await res.json()) as { reason: string }).reason,
      };
    };
    const password = randomBytes(18).toString("base64url");
    expect(await signup("{not json")).toEqual({
      status: 400,
      type: "application/problem+json",
      reason: "MALFORMED_JSON",
    });
    expect(
      await signup(JSON.stringify({ username: "Bad Name", registration_id: 7, password })),
    ).toMatchObject({
      status: 400,
      reason: "INVALID_SIGNUP",
    });
    expect(await signup(JSON.stringify({ username: "ok", registration_id: 0, password }))).toMatchObject({
      status: 400,
      reason: "INVALID_REGISTRATION_ID",
    });
    expect(
      await signup(JSON.stringify({ username: a.handle.value, registration_id: 7, password })),
    ).toMatchObject({
      status: 409,
      reason: "HANDLE_TAKEN",
    });

    for (const u of Object.values(users)) u.client.start();
    await waitFor(
      "every client to drain its queue",
      () => Object.values(users).every((u) => u.queueEmpty > 0),
      diagnose,
    );
  });

  test("while our users have not opted in, the Acme user can neither find, message nor group them", async () => {
    const a = users.A;
    for (const key of ["W", "M", "I"] as const) {
      const u = users[key];
      expect({ key, reachable: await u.client.getThirdPartyReachable() }).toEqual({ key, reachable: false });
      expect({ key, found: await a.client.resolveHandle(u.handle) }).toEqual({ key, found: undefined });
      expect({ key, found: await a.client.getAccount(u.accountId) }).toEqual({ key, found: undefined });
      texts.push(`interop-${nonce} refused A→${key}`);
      const r = await a.client.sendMessage(u.accountId, { text: `interop-${nonce} refused A→${key}` });
      expect({ key, kind: r.kind }).toEqual({ key, kind: "recipient_not_found" });
    }
    const group = await a.client.createGroup([users.W.accountId]).then(
      () => "created",
      (e: unknown) => (isAppError(e) ? `${e.code}:${e.reason}` : String(e)),
    );
    expect(group).toMatch(/:ACCOUNT_NOT_FOUND$/);
    // Our users can still write to the Acme user (it is the Acme user who cannot reach them).
    await users.I.client.resolveHandle(a.handle);
    await send("I", "A");
    await waitFor("the Acme user to get I's message", () => a.messages.length === 1, diagnose);
    expect(lines(a)).toEqual([`I: interop-${nonce} I→A`]);
    // The refused sends reached no one.
    for (const key of ["W", "M", "I"] as const) expect(users[key].messages).toEqual([]);
  });

  test("after opting in through each gateway, everyone exchanges one-to-one messages, marked as third-party", async () => {
    for (const key of ["W", "M", "I"] as const) {
      expect({ key, set: await users[key].client.setThirdPartyReachable(true) }).toEqual({ key, set: true });
      expect(await users[key].client.getThirdPartyReachable()).toBe(true);
      expect((await users.A.client.resolveHandle(users[key].handle))?.account?.id).toBe(users[key].accountId);
      // Each resolves the Acme user through its own gateway's native addressing.
      expect((await users[key].client.resolveHandle(users.A.handle))?.account?.id).toBe(users.A.accountId);
    }
    for (const key of ["W", "M", "I"] as const) await send("A", key);
    for (const key of ["W", "M"] as const) await send(key, "A");

    const mark = ` [third-party ${PROVIDER}]`;
    await waitFor(
      "every one-to-one message",
      () =>
        ["W", "M", "I"].every((k) => users[k as Key].messages.length === 1) && users.A.messages.length === 3,
      diagnose,
    );
    for (const key of ["W", "M", "I"] as const)
      expect({ key, lines: lines(users[key]) }).toEqual({
        key,
        lines: [`A${mark}: interop-${nonce} A→${key}`],
      });
    expect(lines(users.A)).toEqual([
      `I: interop-${nonce} I→A`,
      `W: interop-${nonce} W→A`,
      `M: interop-${nonce} M→A`,
    ]);
  });

  test("a group of all four apps carries everyone's messages, end-to-end encrypted", async () => {
    // The WhatsApp-style transport addresses members by JID: it must have seen their handles.
    for (const key of ["M", "I"] as const) await users.W.client.resolveHandle(users[key].handle);
    const group = await users.W.client.createGroup([users.M.accountId, users.I.accountId, users.A.accountId]);
    groupId = group.id;
    expect(group.members.map((m) => m.account?.id).sort()).toEqual(
      Object.values(users)
        .map((u) => u.accountId)
        .sort(),
    );
    const before = Object.fromEntries(Object.values(users).map((u) => [u.key, u.messages.length]));
    const order: Key[] = ["A", "W", "M", "I"];
    for (const from of order) {
      texts.push(`interop-${nonce} ${from}→group`);
      const r = await users[from].client.sendGroupMessage(groupId, {
        text: `interop-${nonce} ${from}→group`,
      });
      expect({ from, kind: r.kind }).toEqual({ from, kind: "sent" });
    }
    await waitFor(
      "every group message at every other member",
      () => Object.values(users).every((u) => u.messages.length === (before[u.key] ?? 0) + 3),
      diagnose,
    );
    const mark = ` [third-party ${PROVIDER}]`;
    for (const u of Object.values(users)) {
      const want = order
        .filter((k) => k !== u.key)
        .map((k) => `${k} in group${k === "A" ? mark : ""}: interop-${nonce} ${k}→group`);
      expect({ user: u.key, lines: lines(u).slice(before[u.key]) }).toEqual({ user: u.key, lines: want });
    }
    for (const u of Object.values(users))
      expect({ user: u.key, errors: u.errors }).toEqual({ user: u.key, errors: [] });
  });

  test("stores only ciphertext: no message text is in any database row", async () => {
    const db = createDatabase({ url: clone?.url ?? "", poolSize: 1 });
    try {
      const tables = await sql<{ tablename: string }>`
        SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`.execute(db);
      let rows = 0;
      const leaks: string[] = [];
      for (const { tablename } of tables.rows) {
        const result = await sql<{
          row: string;
        }>`SELECT t::text AS row FROM ${sql.table(tablename)} t`.execute(db);
        for (const { row } of result.rows) {
          rows++;
          for (const text of texts)
            if (row.includes(text) || row.includes(Buffer.from(text).toString("hex")))
              leaks.push(`${tablename}: ${text}`);
        }
      }
      // 3 refused sends, 6 one-to-one messages and 4 group posts.
      expect(texts.length).toBe(13);
      expect(rows).toBeGreaterThan(texts.length);
      expect(leaks).toEqual([]);
    } finally {
      await db.destroy();
    }
  });

  test("revoking the provider with the CLI cuts Acme and its users off at once", async () => {
    const cli = (...args: string[]) =>
      promisify(execFile)(process.execPath, [...SOURCE, "src/provider-cli.ts", ...args], {
        cwd: serviceDir("delivery"),
        env: { ...process.env, DATABASE_URL: clone?.url ?? "" },
      });
    expect((await cli("list")).stdout).toMatch(/^acme\tAcme Chat\tcreated \S+\tactive$/m);
    expect((await cli("revoke", PROVIDER)).stdout).toMatch(/^provider acme revoked at /);
    expect((await cli("list")).stdout).toMatch(/^acme\tAcme Chat\tcreated \S+\trevoked \S+$/m);

    const signup = await fetch(`http://127.0.0.1:${ports.acme}/v1/signup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        username: `late${nonce}`,
        registration_id: 7,
        password: randomBytes(18).toString("base64url"),
      }),
    });
    expect(signup.status).toBe(401);
    expect(((await signup.json()) as { reason: string }).reason).toBe("CREDENTIALS_REVOKED");
    const refused = await users.A.client
      .sendMessage(users.W.accountId, { text: `interop-${nonce} after revocation` })
      .then(
        () => "sent",
        (e: unknown) => (isAppError(e) ? e.reason : String(e)),
      );
    expect(refused).toBe("CREDENTIALS_REVOKED");
  });
});
