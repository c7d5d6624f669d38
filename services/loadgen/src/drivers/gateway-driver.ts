// Drives the system through the three gateways' native APIs (the full path: client → gateway →
// delivery → gateway → client), each simulated account through its own app's gateway:
// WhatsApp-style accounts over the gRPC Chat stream, Messenger-style ones over REST + WebSocket,
// Instagram-style ones over REST + SSE. Every device is a client of its gateway with its own
// credential, using the SDK's transports (@switchboard/sdk), so the load generator exercises the
// same client code applications use.
//
// A send that fails with a transient error (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
// ABORTED, a dropped connection) is retried with the same client message id, which every gateway
// de-duplicates: a retry never produces a second message, and a transient error is not a loss.
import { create } from "@bufbuild/protobuf";
import { Code, isAppError } from "@switchboard/errors";
import {
  App,
  EnvelopeType,
  HandleSchema,
  ResolveHandleRequestSchema,
  SendGroupMessageRequestSchema,
  newSendMessageRequest,
  CreateGroupRequestSchema,
  RegisterAccountRequestSchema,
  RegisterDeviceRequestSchema,
} from "@switchboard/proto";
import {
  createInstagramTransport,
  createMessengerTransport,
  createWhatsAppTransport,
  whatsAppTranslation,
  type GroupSendOutcome,
  type InstagramTransport,
  type MessengerTransport,
  type ReceiveSubscription,
  type SendOutcome,
  type Transport,
  type WhatsAppTransport,
} from "@switchboard/sdk";
import type { Logger } from "pino";
import type { AppName } from "../topology.js";
import { errorKey } from "./delivery-driver.js";
import type { DeviceListener, DeviceRef, Driver, SendResult } from "./driver.js";
import { h2BidiOpener } from "./h2-bidi.js";
import { createH2Connector, type H2Connector } from "./h2-grpc.js";
import { createPooledFetch } from "./pooled-fetch.js";

/** Where the three gateways listen. */
export interface GatewayTargets {
  /** The WhatsApp-style gateway's gRPC address, `host:port`. */
  whatsapp?: string;
  /**
   * Base URL of the WhatsApp-style gateway's development admin endpoint (`DEV_ADMIN=true`), which
   * serves verification codes: registration reads them there.
   */
  whatsappAdmin?: string;
  /** The Messenger-style gateway's base URL, `http://host:port`. */
  messenger?: string;
  /** The Instagram-style gateway's base URL, `http://host:port`. */
  instagram?: string;
}

/** Options of {@link createGatewayDriver}. */
export interface GatewayDriverOptions {
  targets: GatewayTargets;
  /** Unacknowledged deliveries in flight per device (Messenger and Instagram `?window=`). */
  window: number;
  /** Messenger-style sends as frames on the device's WebSocket (true) or as POST requests. */
  messengerSendOverSocket: boolean;
  /**
   * HTTP/2 connections the WhatsApp-style devices share (devices spread over them in turn); 0: one
   * per device, as real clients have.
   */
  whatsappConnections: number;
  /**
   * The WhatsApp-style devices' Chat streams: over the lean HTTP/2 client of h2-bidi.ts (`h2`), or
   * over the SDK's grpc-js channel (`grpc-js`), as an app using the SDK does by default.
   */
  whatsappChat: "h2" | "grpc-js";
  /** Total time a send may take, retries included, before it counts as failed. */
  sendTimeoutMs: number;
  log: Logger;
}

const APP_ENUM: Record<AppName, App> = {
  whatsapp: App.WHATSAPP,
  messenger: App.MESSENGER,
  instagram: App.INSTAGRAM,
};
const ACK_FLUSH_MS = 5;
const RETRY_INITIAL_MS = 100;
const RETRY_MAX_MS = 2_000;
const RESUBSCRIBE_INITIAL_MS = 100;
const RESUBSCRIBE_MAX_MS = 2_000;
/**
 * Subscriptions being opened at once: each costs the gateway a token check (a database query);
 * hundreds at once exhaust its pool, as a reconnect storm would.
 */
const MAX_OPENING = 32;
const RETRYABLE = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Unknown,
]);

/** Whether a failed send may be retried with the same client message id. */
export function isRetryable(err: unknown): boolean {
  return isAppError(err) ? RETRYABLE.has(err.code) : true;
}

function directResult(o: SendOutcome): SendResult {
  switch (o.kind) {
    case "sent":
      return { ok: true, messageId: o.messageId };
    case "mismatched":
      return { ok: false, code: "OUTCOME", reason: "MISMATCHED_DEVICES" };
    case "stale":
      return { ok: false, code: "OUTCOME", reason: "STALE_DEVICES" };
    case "not_found":
      return { ok: false, code: "OUTCOME", reason: "RECIPIENT_NOT_FOUND" };
  }
}

function groupResult(o: GroupSendOutcome): SendResult {
  switch (o.kind) {
    case "sent":
      return { ok: true, messageId: o.messageId };
    case "mismatched":
      return { ok: false, code: "OUTCOME", reason: "GROUP_MISMATCHED_DEVICES" };
    case "not_a_member":
      return { ok: false, code: "OUTCOME", reason: "NOT_A_GROUP_MEMBER" };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One simulated device: its transport, subscription and pending acknowledgements. */
interface Client {
  ref: DeviceRef;
  transport: Transport;
  subscription?: ReceiveSubscription;
  acks: string[];
  /** Set once the device has been told to stop (close). */
  closed: boolean;
}

/**
 * Creates the gateway driver (`--via gateways`). Each device gets its own SDK transport and
 * credential; acknowledgements are batched per device and flushed every few milliseconds.
 */
export function createGatewayDriver(opts: GatewayDriverOptions): Driver {
  const clients = new Map<string, Client>();
  const ackDirty = new Set<Client>();
  let flushTimer: NodeJS.Timeout | undefined;
  let retries = 0;
  let reconnects = 0;
  let closing = false;
  const keyOf = (d: { accountId: string; deviceId: number }) => `${d.accountId}/${d.deviceId}`;

  const target = (app: AppName): string => {
    const t = opts.targets[app];
    if (!t) throw new Error(`no address for the ${app} gateway: pass --${app} (see --help)`);
    return t;
  };

  async function verificationCode(phone: string): Promise<string> {
    const admin = opts.targets.whatsappAdmin;
    if (!admin)
      throw new Error(
        "WhatsApp-style registration needs --whatsapp-admin (the gateway's DEV_ADMIN endpoint)",
      );
    const url = `${admin.replace(/\/+$/, "")}/admin/codes/${encodeURIComponent(phone)}`;
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`no verification code for ${phone} at ${url}: HTTP ${res.status}`);
    return ((await res.json()) as { code: string }).code;
  }

  // One attempt gets a third of a send's budget, so that a timed-out attempt can still be retried.
  const timeouts = { callTimeoutMs: Math.max(1_000, Math.round(opts.sendTimeoutMs / 3)) };
  // Every HTTP transport shares one set of keep-alive pools (and a much cheaper fetch than the global one).
  const pooled = createPooledFetch();
  const http = { ...timeouts, fetch: pooled.fetch };
  const messengerHttp = { ...http, sendOverSocket: opts.messengerSendOverSocket };
  // grpc-js shares one connection among channels with equal options: a distinct value of this
  // (otherwise unused) option per group of devices gives each group its own connection.
  // The lean Chat streams get the same grouping: one connector (HTTP/2 session) per group.
  let whatsappDevices = 0;
  const chatConnectors = new Map<number, H2Connector>();
  const whatsappChannel = () => {
    const n = whatsappDevices++;
    const connection = opts.whatsappConnections > 0 ? n % opts.whatsappConnections : n;
    const channel = { channelOptions: { "switchboard.loadgen.connection": connection } };
    if (opts.whatsappChat === "grpc-js") return channel;
    let connector = chatConnectors.get(connection);
    if (connector === undefined) {
      connector = createH2Connector(target("whatsapp"));
      chatConnectors.set(connection, connector);
    }
    return { ...channel, openChat: h2BidiOpener(connector) };
  };

  /** A transport for a device that is to be registered (no credential yet). */
  function newTransport(app: AppName): Transport {
    switch (app) {
      case "whatsapp":
        return createWhatsAppTransport({
          target: target(app),
          verificationCode,
          ...timeouts,
          ...whatsappChannel(),
        });
      case "messenger":
        return createMessengerTransport({ baseUrl: target(app), ...messengerHttp });
      case "instagram":
        return createInstagramTransport({ baseUrl: target(app), ...http });
    }
  }

  /** The transport of a registered device (from its saved credential, for reused populations). */
  function client(ref: DeviceRef): Client {
    const key = keyOf(ref);
    const known = clients.get(key);
    if (known) return known;
    if (ref.secret === undefined || ref.handle === undefined)
      throw new Error(
        `device ${key} has no gateway credential (a population registered through the delivery API cannot be driven through the gateways)`,
      );
    let transport: Transport;
    switch (ref.app) {
      case "whatsapp": {
        const jid = whatsAppTranslation.formatUserJid(
          create(HandleSchema, { app: App.WHATSAPP, value: ref.handle }),
          ref.deviceId,
        );
        transport = createWhatsAppTransport({
          target: target("whatsapp"),
          session: { token: ref.secret, jid, accountId: ref.accountId },
          ...timeouts,
          ...whatsappChannel(),
        });
        break;
      }
      case "messenger":
        transport = createMessengerTransport({
          baseUrl: target("messenger"),
          accessToken: ref.secret,
          ...messengerHttp,
        });
        transport.setDeviceCredentials({ accountId: ref.accountId, deviceId: ref.deviceId, password: "" });
        break;
      case "instagram":
        transport = createInstagramTransport({
          baseUrl: target("instagram"),
          credentials: { accountId: ref.accountId, deviceId: ref.deviceId, password: ref.secret },
          ...http,
        });
        break;
    }
    const c: Client = { ref, transport, acks: [], closed: false };
    clients.set(key, c);
    return c;
  }

  async function flushAcks(): Promise<void> {
    if (flushTimer) {
      clearTimeout(flushTimer);
      flushTimer = undefined;
    }
    const writes: Promise<void>[] = [];
    for (const c of ackDirty) {
      const ids = c.acks;
      c.acks = [];
      // A failed ack (the connection broke) is harmless: the gateway redelivers on the next
      // subscription and de-duplication absorbs it.
      if (ids.length > 0) writes.push(c.transport.ack(ids).catch(() => undefined));
    }
    ackDirty.clear();
    await Promise.all(writes);
  }

  function queueAck(c: Client, id: string) {
    c.acks.push(id);
    ackDirty.add(c);
    flushTimer ??= setTimeout(() => void flushAcks(), ACK_FLUSH_MS);
  }

  let opening = 0;
  const openWaiters: Array<() => void> = [];
  async function openSlot(): Promise<() => void> {
    while (opening >= MAX_OPENING) await new Promise<void>((r) => openWaiters.push(r));
    opening++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      opening--;
      openWaiters.shift()?.();
    };
  }

  /** Receives until closed; resubscribes with backoff after a failure (the gateway redelivers). */
  async function receiveLoop(c: Client, listener: DeviceListener): Promise<void> {
    let failures = 0;
    while (!c.closed && !closing) {
      const opened = await openSlot();
      const sub = c.transport.receive({ window: opts.window });
      c.subscription = sub;
      try {
        for await (const event of sub) {
          opened();
          failures = 0;
          if (event.kind === "queue_empty") {
            listener.onQueueEmpty();
            continue;
          }
          const env = event.envelope;
          listener.onMessage({
            envelopeId: env.id,
            kind: env.type === EnvelopeType.SERVER_DELIVERY_RECEIPT ? "receipt" : "message",
            content: env.content,
            clientMessageId: env.clientMessageId,
          });
          queueAck(c, env.id);
        }
        opened();
        if (c.closed || closing) return;
      } catch (err) {
        opened();
        if (c.closed || closing) return;
        // A transient failure (the gateway restarted, the connection dropped, a 5xx) is what a
        // client reconnects from: counted, not an error. Anything else (a refused credential) is final.
        if (!isRetryable(err) && !(isAppError(err) && err.code === Code.Internal)) {
          const k = errorKey(err);
          listener.onError(k.code, k.reason);
          return;
        }
      }
      reconnects++;
      failures++;
      await sleep(Math.min(RESUBSCRIBE_MAX_MS, RESUBSCRIBE_INITIAL_MS * 2 ** Math.min(failures - 1, 5)));
    }
  }

  /** Runs a send, retrying transient failures with the same request until the deadline. */
  async function withRetries(run: () => Promise<SendResult>): Promise<SendResult> {
    const deadline = performance.now() + opts.sendTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await run();
      } catch (err) {
        const wait = Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** Math.min(attempt, 5));
        if (closing || !isRetryable(err) || performance.now() + wait >= deadline) {
          const k = errorKey(err);
          return { ok: false, code: k.code, reason: k.reason };
        }
        retries++;
        await sleep(wait);
      }
    }
  }

  return {
    mode: "gateways",

    get retries() {
      return retries;
    },

    get reconnects() {
      return reconnects;
    },

    async registerAccount(req) {
      const transport = newTransport(req.app);
      const r = await transport.registerAccount(
        create(RegisterAccountRequestSchema, {
          handle: { app: APP_ENUM[req.app], value: req.handle },
          registrationId: req.registrationId,
          password: req.password,
        }),
        { appToken: "" },
      );
      const accountId = r.account?.id ?? "";
      const deviceId = r.device?.deviceId ?? 1;
      // The Messenger-style gateway assigns the numeric id; the others keep the requested handle.
      const handle = r.account?.handle?.value || req.handle;
      let secret: string | undefined;
      if (req.app === "whatsapp") secret = (transport as WhatsAppTransport).currentSession?.token;
      else if (req.app === "messenger") secret = (transport as MessengerTransport).accessToken;
      else secret = req.password;
      transport.setDeviceCredentials({ accountId, deviceId, password: req.password });
      if (secret === undefined) throw new Error(`the ${req.app} gateway issued no credential`);
      const ref: DeviceRef = {
        app: req.app,
        accountId,
        deviceId,
        registrationId: req.registrationId,
        handle,
        secret,
      };
      clients.set(keyOf(ref), { ref, transport, acks: [], closed: false });
      return { accountId, handle, secret };
    },

    async registerDevice(req) {
      const primary = clients.get(keyOf({ accountId: req.accountId, deviceId: 1 }));
      if (!primary) throw new Error(`account ${req.accountId} has no registered primary device here`);
      const request = create(RegisterDeviceRequestSchema, {
        accountId: req.accountId,
        registrationId: req.registrationId,
        password: req.password,
      });
      let transport: Transport;
      let deviceId: number;
      let secret: string | undefined;
      switch (req.app) {
        case "whatsapp": {
          // A companion links with a one-time code the primary creates.
          const { code } = await (primary.transport as WhatsAppTransport).createLinkCode();
          transport = newTransport("whatsapp");
          deviceId = (await transport.registerDevice(request, { appToken: code })).device?.deviceId ?? 0;
          secret = (transport as WhatsAppTransport).currentSession?.token;
          break;
        }
        case "messenger": {
          // The primary registers the device; the gateway issues the new device's token to it.
          const p = primary.transport as MessengerTransport;
          deviceId = (await p.registerDevice(request)).device?.deviceId ?? 0;
          secret = p.issuedAccessToken(deviceId);
          transport = createMessengerTransport({
            baseUrl: target("messenger"),
            accessToken: secret,
            ...messengerHttp,
          });
          break;
        }
        case "instagram": {
          // The primary adds the device with its secret; the device then signs in with it.
          deviceId = (await primary.transport.registerDevice(request)).device?.deviceId ?? 0;
          secret = req.password;
          transport = createInstagramTransport({
            baseUrl: target("instagram"),
            credentials: { accountId: req.accountId, deviceId, password: req.password },
            ...http,
          });
          break;
        }
      }
      if (secret === undefined) throw new Error(`the ${req.app} gateway issued no credential`);
      transport.setDeviceCredentials({ accountId: req.accountId, deviceId, password: req.password });
      const ref: DeviceRef = {
        app: req.app,
        accountId: req.accountId,
        deviceId,
        registrationId: req.registrationId,
        handle: primary.ref.handle,
        secret,
      };
      clients.set(keyOf(ref), { ref, transport, acks: [], closed: false });
      return { deviceId, secret };
    },

    async createGroup(requester, members) {
      const c = client(requester);
      if (requester.app === "whatsapp") await resolveAll(c, members);
      const g = await c.transport.createGroup(
        create(CreateGroupRequestSchema, {
          requester: { accountId: requester.accountId, deviceId: requester.deviceId },
          memberAccountIds: members.map((m) => m.accountId),
        }),
      );
      return g.id;
    },

    async introduce(device, peers, { reusedPopulation }) {
      const c = client(device);
      // WhatsApp-style clients address accounts by JID: learn each peer's handle (one LookupUser).
      if (device.app === "whatsapp") await resolveAll(c, peers);
      // Instagram-style users hold messages from strangers as message requests: opening the
      // one-to-one thread with each peer accepts it (and is idempotent for further devices).
      // (Acceptance is stored by the gateway: a reused population has it already.)
      if (device.app === "instagram" && device.deviceId === 1 && !reusedPopulation) {
        const token = await instagramToken(c, target("instagram"));
        for (const p of peers)
          if (p.accountId !== device.accountId) await openThread(target("instagram"), token, p);
      }
    },

    subscribe(device, listener) {
      const c = client(device);
      c.closed = false;
      void receiveLoop(c, listener);
    },

    async sendDirect(m) {
      const c = client(m.sender);
      const req = newSendMessageRequest({
        sender: { accountId: m.sender.accountId, deviceId: m.sender.deviceId },
        destinationAccountId: m.recipientAccountId,
        messages: m.copies.map((copy) => ({
          deviceId: copy.deviceId,
          registrationId: copy.registrationId,
          type: copy.type === "prekey" ? EnvelopeType.PREKEY_MESSAGE : EnvelopeType.CIPHERTEXT,
          content: copy.content,
        })),
        clientMessageId: m.clientMessageId,
        clientTimestampMs: BigInt(m.clientTimestampMs),
        noDeliveryReceipt: m.noDeliveryReceipt,
      });
      return withRetries(async () => directResult(await c.transport.sendMessage(req)));
    },

    async sendGroup(m) {
      const c = client(m.sender);
      const req = create(SendGroupMessageRequestSchema, {
        sender: { accountId: m.sender.accountId, deviceId: m.sender.deviceId },
        groupId: m.groupId,
        content: m.content,
        clientMessageId: m.clientMessageId,
        clientTimestampMs: BigInt(m.clientTimestampMs),
      });
      return withRetries(async () => groupResult(await c.transport.sendGroupMessage(req)));
    },

    flushAcks,

    async close() {
      await flushAcks();
      closing = true;
      for (const c of clients.values()) {
        c.closed = true;
        c.subscription?.close();
      }
      await Promise.all([...clients.values()].map((c) => c.transport.close().catch(() => undefined)));
      clients.clear();
      await Promise.all([pooled.close(), ...[...chatConnectors.values()].map((c) => c.close())]);
      chatConnectors.clear();
    },
  };

  /** Teaches a WhatsApp-style transport the handles (JIDs) of accounts of any app. */
  async function resolveAll(c: Client, peers: DeviceRef[]): Promise<void> {
    for (const p of peers) {
      if (p.handle === undefined) throw new Error(`account ${p.accountId} has no handle`);
      const r = await c.transport.resolveHandle(
        create(ResolveHandleRequestSchema, { handle: { app: APP_ENUM[p.app], value: p.handle } }),
      );
      if (r.result.case !== "found")
        throw new Error(`${p.app} account ${p.handle} not found through the gateway`);
    }
  }
}

/** The device's Instagram-style access token (signing in with its secret when none is known yet). */
async function instagramToken(c: Client, baseUrl: string): Promise<string> {
  const known = (c.transport as InstagramTransport).accessToken;
  if (known !== undefined) return known;
  const res = await fetch(`${baseUrl.replace(/\/+$/, "")}/v1/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ account_id: c.ref.accountId, device_id: c.ref.deviceId, password: c.ref.secret }),
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok)
    throw new Error(
      `signing in Instagram-style device ${c.ref.accountId}/${c.ref.deviceId} failed: HTTP ${res.status}`,
    );
  return ((await res.json()) as { access_token: string }).access_token;
}

/**
 * Opens (idempotently) the Instagram-style one-to-one thread with `peer`: opening a thread accepts
 * the peer, so its messages are delivered instead of being held as a message request.
 */
async function openThread(baseUrl: string, token: string, peer: DeviceRef): Promise<void> {
  const res = await fetch(`${baseUrl.replace(/\/+$/, "")}/v1/direct/threads`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ recipients: [peer.accountId] }),
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok)
    throw new Error(
      `opening an Instagram-style thread with ${peer.accountId} failed: HTTP ${res.status} ${await res.text()}`,
    );
}
