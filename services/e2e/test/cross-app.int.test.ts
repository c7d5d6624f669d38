// The issue-5 "done when" test: the delivery service and the three gateways as separate processes
// on real PostgreSQL and Redis, and SDK clients on every app. A WhatsApp-, a Messenger- and an
// Instagram-style user, each with two devices, exchange end-to-end-encrypted messages in every
// direction and in a three-app group; one device is offline meanwhile and catches up in order;
// senders get delivery receipts; an Instagram message request is held, listed and accepted; the
// WhatsApp-style gateway is restarted mid-conversation without losing or duplicating anything.
//
// Every send is awaited before the next one, so each device's queue order is the order of the
// ledger below: the test asserts the exact sequence every device saw, not just counts.
import { randomBytes, randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";
import { App } from "@switchboard/proto";
import {
  createClient,
  createInstagramTransport,
  createMemoryStore,
  createMessengerTransport,
  createWhatsAppTransport,
  type InstagramTransport,
  type MessengerTransport,
  type SwitchboardClient,
  type Transport,
  type WhatsAppTransport,
  recordEvents,
  type RecordedEvents,
} from "@switchboard/sdk";
import { cloneTemplateDatabase, redisUrl, type DatabaseClone } from "@switchboard/testkit";
import {
  freePort,
  httpReady,
  startServiceProcess,
  tcpReady,
  type ServiceProcess,
} from "@switchboard/testkit/service-process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

// ---- the system: four processes -----------------------------------------------------------------

const serviceDir = (name: string) => fileURLToPath(new URL(`../../${name}/`, import.meta.url));
const appToken = (app: string) => `e2e-${app}-${randomBytes(12).toString("hex")}`;

interface System {
  clone: DatabaseClone;
  delivery: ServiceProcess;
  whatsapp: ServiceProcess;
  messenger: ServiceProcess;
  instagram: ServiceProcess;
  ports: {
    delivery: number;
    metrics: number;
    whatsapp: number;
    whatsappAdmin: number;
    messenger: number;
    instagram: number;
  };
}

/**
 * Starts delivery, then the three gateways in parallel, each from its sources in its own directory.
 * Whatever it started is in `owned` (for afterAll), also when it fails part-way.
 */
async function startSystem(owned: { processes: ServiceProcess[]; clones: DatabaseClone[] }): Promise<System> {
  const clone = await cloneTemplateDatabase();
  owned.clones.push(clone);
  const ports = {
    delivery: await freePort(),
    metrics: await freePort(),
    whatsapp: await freePort(),
    whatsappAdmin: await freePort(),
    messenger: await freePort(),
    instagram: await freePort(),
  };
  const tokens = {
    whatsapp: appToken("whatsapp"),
    messenger: appToken("messenger"),
    instagram: appToken("instagram"),
  };
  const common = { DATABASE_URL: clone.url, LOG_LEVEL: "info", SHUTDOWN_GRACE_MS: "5000" };
  // The services take no Redis key prefix: isolation comes from the fresh accounts of this run.
  const started = async (p: Promise<ServiceProcess>) => {
    const proc = await p;
    owned.processes.push(proc);
    return proc;
  };
  const delivery = await started(
    startServiceProcess({
      name: "delivery",
      cwd: serviceDir("delivery"),
      env: {
        ...common,
        REDIS_URL: redisUrl(),
        APP_TOKENS: Object.entries(tokens)
          .map(([app, token]) => `${app}=${token}`)
          .join(","),
        GRPC_HOST: "127.0.0.1",
        GRPC_PORT: String(ports.delivery),
        METRICS_PORT: String(ports.metrics),
        INSTANCE_ID: "e2e-delivery",
      },
      ready: httpReady(`http://127.0.0.1:${ports.metrics}/healthz`),
      readyTimeoutMs: 90_000,
    }),
  );
  const gatewayCommon = {
    ...common,
    DELIVERY_TARGET: `127.0.0.1:${ports.delivery}`,
    // No separate metrics listener: a default port would collide with other systems on this machine.
    METRICS_PORT: "0",
  };
  // allSettled: a gateway that did start must be owned (and stopped) even if another one failed.
  const [whatsapp, messenger, instagram] = settled(
    await Promise.allSettled([
      started(
        startServiceProcess({
          name: "gateway-whatsapp",
          cwd: serviceDir("gateway-whatsapp"),
          env: {
            ...gatewayCommon,
            DELIVERY_APP_TOKEN: tokens.whatsapp,
            GRPC_HOST: "127.0.0.1",
            GRPC_PORT: String(ports.whatsapp),
            DEV_ADMIN: "true",
            ADMIN_PORT: String(ports.whatsappAdmin),
          },
          // Registration reads codes from the admin endpoint, so both ports must be up.
          ready: async () => (await tcpReady(ports.whatsapp)()) && (await tcpReady(ports.whatsappAdmin)()),
          readyTimeoutMs: 90_000,
        }),
      ),
      started(
        startServiceProcess({
          name: "gateway-messenger",
          cwd: serviceDir("gateway-messenger"),
          env: {
            ...gatewayCommon,
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
            ...gatewayCommon,
            DELIVERY_APP_TOKEN: tokens.instagram,
            HTTP_HOST: "127.0.0.1",
            HTTP_PORT: String(ports.instagram),
          },
          ready: httpReady(`http://127.0.0.1:${ports.instagram}/healthz`),
          readyTimeoutMs: 90_000,
        }),
      ),
    ]),
  );
  return { clone, delivery, whatsapp, messenger, instagram, ports };
}

function settled<T extends readonly unknown[]>(results: { [K in keyof T]: PromiseSettledResult<T[K]> }): T {
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

// ---- users, devices and what they saw -----------------------------------------------------------

type UserKey = "W" | "M" | "I";
type Recorded = RecordedEvents;

interface Device {
  label: string;
  user: UserKey;
  deviceId: number;
  client: SwitchboardClient;
  transport: Transport;
  events: Recorded;
  /** Message and sync events as lines, in arrival order (see `seen`). */
  lines: string[];
  online: boolean;
}

interface User {
  key: UserKey;
  accountId: string;
  handle: { app: App; value: string };
  devices: [Device, Device];
}

/** One message of the conversation, in send order. */
interface Sent {
  from: Device;
  to: UserKey | "group";
  text: string;
  clientMessageId: string;
}

function recorder(client: SwitchboardClient): Recorded {
  const events = recordEvents(client);
  return events;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it holds; fails after `timeoutMs` with `what` and `diagnose()`. */
async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  diagnose: () => string = () => "",
  timeoutMs = 45_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${diagnose()}`);
    await sleep(25);
  }
}

describe("Switchboard across apps, as separate processes", () => {
  const owned = { processes: [] as ServiceProcess[], clones: [] as DatabaseClone[] };
  const devices: Device[] = [];
  const ledger: Sent[] = [];
  const nonce = randomBytes(4).toString("hex");
  let sys: System;
  let users: Record<UserKey, User>;

  const clientOptions = { preKeyBatchSize: 10, reconnectDelayMs: { initial: 100, max: 1_000 } };

  async function openDevice(label: string, user: UserKey, transport: Transport): Promise<Device> {
    const client = await createClient({ transport, store: createMemoryStore(), ...clientOptions });
    const device: Device = {
      label,
      user,
      deviceId: 0,
      client,
      transport,
      events: recorder(client),
      lines: [],
      online: false,
    };
    client.on("message", ({ meta, message }) => {
      const inGroup = meta.groupId ? " in group" : "";
      device.lines.push(
        `message from ${nameOf(meta.sender.accountId)}${meta.sender.deviceId}${inGroup}: ${message.text}`,
      );
    });
    client.on("sync", ({ meta, destinationAccountId, message }) => {
      const to = destinationAccountId === undefined ? "group" : nameOf(destinationAccountId);
      device.lines.push(
        `sync from ${nameOf(meta.sender.accountId)}${meta.sender.deviceId} to ${to}: ${message.text}`,
      );
    });
    devices.push(device);
    return device;
  }

  const nameOf = (accountId: string): string =>
    Object.values(users).find((u) => u.accountId === accountId)?.key ?? `unknown account ${accountId}`;

  /** What a device reports, one line per message or sync event, in arrival order. */
  const seen = (d: Device): string[] => d.lines;

  /** What a device should have reported so far: the ledger, filtered for it, in send order. */
  const expected = (d: Device): string[] =>
    ledger.flatMap((s) => {
      const inGroup = s.to === "group" ? " in group" : "";
      if (s.from.user === d.user)
        return s.from === d ? [] : [`sync from ${s.from.label} to ${s.to}: ${s.text}`];
      if (s.to === "group" || s.to === d.user) return [`message from ${s.from.label}${inGroup}: ${s.text}`];
      return [];
    });

  const diagnose = () =>
    devices
      .map(
        (d) =>
          `${d.label}${d.online ? "" : " (offline)"}: saw ${seen(d).length}/${expected(d).length}, ` +
          `errors ${JSON.stringify(d.events.error.map((e) => `${e.context}: ${String(e.error)}`))}`,
      )
      .join("\n");

  /** Waits until every online device has seen what the ledger says, then checks the exact sequences. */
  async function caughtUp(): Promise<void> {
    const online = devices.filter((d) => d.online);
    await waitFor(
      "every online device to see every message",
      () => online.every((d) => seen(d).length >= expected(d).length),
      diagnose,
    );
    for (const d of online)
      expect({ device: d.label, seen: seen(d) }).toEqual({ device: d.label, seen: expected(d) });
  }

  async function send(from: Device, to: UserKey | "group", note = ""): Promise<Sent> {
    const text = `e2e-${nonce} #${ledger.length + 1} ${from.label}→${to}${note}`;
    let clientMessageId: string;
    if (to === "group") {
      const r = await from.client.sendGroupMessage(groupId, { text });
      if (r.kind !== "sent") throw new Error(`${from.label} could not post to the group: ${r.kind}`);
      clientMessageId = r.clientMessageId;
    } else {
      const r = await from.client.sendMessage(users[to].accountId, { text });
      if (r.kind !== "sent") throw new Error(`${from.label} could not send to ${to}: ${r.kind}`);
      clientMessageId = r.clientMessageId;
    }
    const sent = { from, to, text, clientMessageId };
    ledger.push(sent);
    return sent;
  }

  function goOnline(d: Device): void {
    d.client.start();
    d.online = true;
  }

  const queueEmpties = (d: Device) => d.events.queueEmpty.length;
  let groupId = "";

  const igToken = () => (users.I.devices[0].transport as InstagramTransport).accessToken ?? "";
  async function igApi<T>(method: string, path: string): Promise<{ status: number; body: T }> {
    const res = await fetch(`http://127.0.0.1:${sys.ports.instagram}${path}`, {
      method,
      headers: { authorization: `Bearer ${igToken()}` },
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, body: (await res.json()) as T };
  }

  /** Every public table of the clone, each row as text: none may hold a message text (or its hex). */
  async function scanDatabase(texts: string[], known: string): Promise<{ rows: number; leaks: string[] }> {
    const db = new pg.Client({ connectionString: sys.clone.url });
    await db.connect();
    try {
      const tables = await db.query<{ tablename: string }>(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
      );
      let rows = 0;
      let knownFound = false;
      const leaks: string[] = [];
      for (const { tablename } of tables.rows) {
        const result = await db.query<{ row: string }>(
          `SELECT t::text AS row FROM public."${tablename.replaceAll('"', '""')}" t`,
        );
        for (const { row } of result.rows) {
          rows++;
          if (row.includes(known)) knownFound = true;
          for (const text of texts) {
            if (row.includes(text) || row.includes(Buffer.from(text).toString("hex")))
              leaks.push(`${tablename}: ${text}`);
          }
        }
      }
      // The scan can see what the service does keep in the clear (handles), so silence means something.
      expect(knownFound).toBe(true);
      return { rows, leaks };
    } finally {
      await db.end();
    }
  }

  beforeAll(async () => {
    sys = await startSystem(owned);
  });

  afterAll(async () => {
    for (const d of devices) {
      await d.client.close().catch(() => undefined);
      await d.transport.close().catch(() => undefined);
    }
    await Promise.all(owned.processes.map((p) => p.stop()));
    for (const clone of owned.clones) await clone.drop();
  });

  test("registers a user with two devices on each app through its gateway", async () => {
    const phone = `+1555${String(randomInt(10_000_000)).padStart(7, "0")}`;
    const code = async (p: string) => {
      const res = await fetch(
        `http://127.0.0.1:${sys.ports.whatsappAdmin}/admin/codes/${encodeURIComponent(p)}`,
      );
      if (!res.ok) throw new Error(`admin endpoint answered ${res.status}`);
      return ((await res.json()) as { code: string }).code;
    };
    const waTransport = () =>
      createWhatsAppTransport({ target: `127.0.0.1:${sys.ports.whatsapp}`, verificationCode: code });

    // WhatsApp-style: a phone number verified with a code, and a companion linked with a link code.
    const w1 = await openDevice("W1", "W", waTransport());
    const w = await w1.client.registerAccount({ handle: { app: App.WHATSAPP, value: phone }, appToken: "" });
    const w2 = await openDevice("W2", "W", waTransport());
    const { code: linkCode } = await (w1.transport as WhatsAppTransport).createLinkCode();
    const w2r = await w2.client.registerDevice({ accountId: w.accountId, appToken: linkCode });

    // Messenger-style: the gateway picks the numeric id; the first device's token adds the second.
    const msUrl = `http://127.0.0.1:${sys.ports.messenger}`;
    const m1 = await openDevice("M1", "M", createMessengerTransport({ baseUrl: msUrl }));
    const m = await m1.client.registerAccount({ handle: { app: App.MESSENGER, value: "" }, appToken: "" });
    const m2 = await openDevice("M2", "M", createMessengerTransport({ baseUrl: msUrl }));
    const m2r = await m2.client.registerDevice({
      accountId: m.accountId,
      appToken: (m1.transport as MessengerTransport).accessToken ?? "",
    });

    // Instagram-style: a username, and a second device linked through the first one.
    const igUrl = `http://127.0.0.1:${sys.ports.instagram}`;
    const username = `e2e_${nonce}`;
    const i1 = await openDevice("I1", "I", createInstagramTransport({ baseUrl: igUrl }));
    const i = await i1.client.registerAccount({
      handle: { app: App.INSTAGRAM, value: username },
      appToken: "",
    });
    const i2 = await openDevice("I2", "I", createInstagramTransport({ baseUrl: igUrl }));
    const request = await i2.client.createDeviceLinkRequest({ accountId: i.accountId, deviceName: "laptop" });
    const linked = await i1.client.approveDeviceLink(request);
    const i2r = await i2.client.completeDeviceLink({ accountId: i.accountId, deviceId: linked.deviceId });

    const msHandle = (await m1.client.getAccount(m.accountId))?.account?.handle?.value ?? "";
    users = {
      W: { key: "W", accountId: w.accountId, handle: { app: App.WHATSAPP, value: phone }, devices: [w1, w2] },
      M: {
        key: "M",
        accountId: m.accountId,
        handle: { app: App.MESSENGER, value: msHandle },
        devices: [m1, m2],
      },
      I: {
        key: "I",
        accountId: i.accountId,
        handle: { app: App.INSTAGRAM, value: username },
        devices: [i1, i2],
      },
    };
    for (const [d, r] of [
      [w1, w],
      [w2, w2r],
      [m1, m],
      [m2, m2r],
      [i1, i],
      [i2, i2r],
    ] as const)
      d.deviceId = r.deviceId;

    expect(devices.map((d) => `${d.label}=${d.deviceId}`)).toEqual([
      "W1=1",
      "W2=2",
      "M1=1",
      "M2=2",
      "I1=1",
      "I2=2",
    ]);
    expect(msHandle).toMatch(/^[0-9]+$/);
    // Every device resolves the others' native handles (the WhatsApp-style transport addresses by JID).
    for (const d of devices) {
      for (const u of Object.values(users)) {
        if (u.key === d.user) continue;
        expect((await d.client.resolveHandle(u.handle))?.account?.id).toBe(u.accountId);
      }
    }
    for (const u of Object.values(users)) expect(await u.devices[0].client.refreshOwnDevices()).toEqual([2]);

    // Everyone but M2 comes online; M2 stays offline until later.
    for (const d of devices) if (d.label !== "M2") goOnline(d);
    await waitFor(
      "the online devices to drain their queues",
      () => devices.every((d) => !d.online || queueEmpties(d) > 0),
      diagnose,
    );
  });

  test("holds an Instagram message request from a WhatsApp-style user until it is accepted", async () => {
    const [w1] = users.W.devices;
    const [i1, i2] = users.I.devices;
    const first = await send(w1, "I", " (a message request)");

    type Pending = {
      threads: { thread_id: string; sender: { account_id: string; ref?: string }; item_count: number }[];
    };
    let listed: Pending["threads"][number] | undefined;
    await waitFor("the request to be listed", async () => {
      const r = await igApi<Pending>("GET", "/v1/direct/pending");
      listed = r.body.threads.find((t) => t.sender.account_id === users.W.accountId);
      return listed !== undefined;
    });
    expect(listed).toMatchObject({
      sender: { account_id: users.W.accountId, ref: `whatsapp:${users.W.handle.value}` },
    });
    expect(listed?.item_count).toBeGreaterThanOrEqual(1);
    // Held: the request reached neither Instagram device.
    expect([i1.events.message, i2.events.message]).toEqual([[], []]);

    const accepted = await igApi("POST", `/v1/direct/pending/${listed?.thread_id ?? ""}/accept`);
    expect(accepted.status).toBe(200);
    await caughtUp();
    expect(i1.events.message[0]?.message.text).toBe(first.text);
    expect((await igApi<Pending>("GET", "/v1/direct/pending")).body.threads).toEqual([]);
  });

  test("exchanges one-to-one messages in all six directions and in a three-app group", async () => {
    const [w1] = users.W.devices;
    const [m1] = users.M.devices;
    const [i1] = users.I.devices;
    // Instagram writes first to the Messenger-style user, which accepts him as a peer.
    await send(i1, "W");
    await send(i1, "M");
    await send(w1, "M");
    await send(m1, "W");
    await send(m1, "I");
    await send(w1, "I");
    await caughtUp();

    const group = await w1.client.createGroup([users.M.accountId, users.I.accountId]);
    groupId = group.id;
    expect(group.members.map((mm) => mm.account?.id).sort()).toEqual(
      [users.W.accountId, users.M.accountId, users.I.accountId].sort(),
    );
    await send(w1, "group");
    await send(m1, "group");
    await send(i1, "group");
    await caughtUp();
  });

  test("stores only ciphertext: no message text is in any database row", async () => {
    // M2 is offline, so its queue holds every message so far.
    const { rows, leaks } = await scanDatabase(
      ledger.map((s) => s.text),
      users.I.handle.value,
    );
    expect(rows).toBeGreaterThan(ledger.length);
    expect(leaks).toEqual([]);
  });

  test("an offline device catches up in order when it starts", async () => {
    const m2 = users.M.devices[1];
    expect(m2.lines).toEqual([]);
    goOnline(m2);
    await caughtUp();
    // Everything M's first device received, M2 received in the same order, plus M1's sent copies.
    expect(m2.events.message.map((e) => e.message.text)).toEqual(
      users.M.devices[0].events.message.map((e) => e.message.text),
    );
    expect(m2.events.sync.map((e) => e.message.text)).toEqual(
      ledger.filter((s) => s.from.label === "M1").map((s) => s.text),
    );
  });

  test("loses and duplicates nothing while the WhatsApp-style gateway restarts mid-conversation", async () => {
    const [w1, w2] = users.W.devices;
    const [m1, m2] = users.M.devices;
    const i2 = users.I.devices[1];
    await send(m2, "W", " (before the restart)");
    await caughtUp();

    const reconnectsBefore = [queueEmpties(w1), queueEmpties(w2)];
    let restarted = false;
    const restarting = sys.whatsapp.restart().finally(() => void (restarted = true));
    // Handled here so a failed restart is not reported as unhandled before the await below throws it.
    restarting.catch(() => undefined);
    await waitFor(
      "the WhatsApp-style gateway to go down",
      async () => restarted || !(await tcpReady(sys.ports.whatsapp)()),
    );
    // Written to W's devices while their gateway is away (other apps' gateways carry them).
    await send(m1, "W", " (during the restart)");
    await send(i2, "W", " (during the restart)");
    await send(m2, "W", " (during the restart)");
    await restarting;

    await waitFor(
      "both WhatsApp-style devices to reconnect",
      () => queueEmpties(w1) > (reconnectsBefore[0] ?? 0) && queueEmpties(w2) > (reconnectsBefore[1] ?? 0),
      diagnose,
    );
    // The conversation goes on from the second devices, the reconnected ones included.
    await send(w2, "M", " (after the restart)");
    await send(w2, "I", " (after the restart)");
    await send(m2, "I");
    await send(i2, "M");
    await send(w1, "M");
    await send(w2, "group");
    await send(m2, "group");
    await send(i2, "group");
    await caughtUp();

    for (const d of devices) {
      expect({ device: d.label, failed: d.events.decryptionFailed }).toEqual({ device: d.label, failed: [] });
      // Only the WhatsApp-style devices lost their connection (and reconnected).
      if (d.user === "W") expect(d.events.error.length).toBeGreaterThan(0);
      const errors = d.events.error.filter((e) => !(d.user === "W" && e.context === "receive"));
      expect({ device: d.label, errors }).toEqual({ device: d.label, errors: [] });
    }
  });

  test("delivery receipts reach every sender from every recipient device", async () => {
    const oneToOne = ledger.filter((s) => s.to !== "group");
    const receiptsOf = (s: Sent) =>
      new Set(
        s.from.events.deliveryReceipt
          .filter((r) => r.meta.clientMessageId === s.clientMessageId)
          .map((r) => `${nameOf(r.meta.sender.accountId)}${r.meta.sender.deviceId}`),
      );
    const want = (s: Sent) => new Set([`${s.to}1`, `${s.to}2`]);
    await waitFor(
      "a delivery receipt from every recipient device",
      () => oneToOne.every((s) => [...want(s)].every((d) => receiptsOf(s).has(d))),
      () => oneToOne.map((s) => `${s.text}: ${JSON.stringify([...receiptsOf(s)])}`).join("\n"),
    );
    for (const s of oneToOne)
      expect({ text: s.text, from: [...receiptsOf(s)].sort() }).toEqual({
        text: s.text,
        from: [...want(s)].sort(),
      });
    // Nothing arrived twice while the receipts came in, either.
    for (const d of devices)
      expect({ device: d.label, seen: seen(d) }).toEqual({ device: d.label, seen: expected(d) });
  });

  test("still stores no message text after the whole conversation", async () => {
    const { leaks } = await scanDatabase(
      ledger.map((s) => s.text),
      users.I.handle.value,
    );
    expect(leaks).toEqual([]);
  });
});
