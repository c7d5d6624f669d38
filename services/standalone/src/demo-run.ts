// The scripted cross-app conversation behind `pnpm demo`: SDK clients on all three apps talk
// through a running system, and the script prints what each client decrypted next to what the
// server delivered (ciphertext only). `demo.ts` is the command line around it.
import { randomBytes, randomInt } from "node:crypto";
import { connect } from "node:net";
import { App, EnvelopeType, type Envelope } from "@switchboard/proto";
import {
  createClient,
  createInstagramTransport,
  createMemoryStore,
  createMessengerTransport,
  createWhatsAppTransport,
  type EnvelopeMeta,
  type InstagramTransport,
  type MessengerTransport,
  type ReceiveOptions,
  type ReceiveSubscription,
  type SwitchboardClient,
  type Transport,
} from "@switchboard/sdk";

/** Where the running system listens (the standalone runner's `Endpoints` fit). */
export interface DemoEndpoints {
  /** The delivery service's gRPC address, `host:port` (checked to be up; the gateways use it). */
  delivery: string;
  /** The WhatsApp-style gateway's gRPC address, `host:port`. */
  whatsapp: string;
  /** Base URL of the WhatsApp-style gateway's dev admin endpoint (verification codes). */
  whatsappAdmin: string;
  /** Base URL of the Messenger-style gateway. */
  messenger: string;
  /** Base URL of the Instagram-style gateway. */
  instagram: string;
}

/** Where the demo writes its report (`process.stdout` fits). */
export interface DemoOutput {
  write(chunk: string): unknown;
}

/** Options of `runDemo`. */
export interface DemoOptions {
  /** How long to wait for any one thing (a delivery, a request to be listed), ms. Default 30,000. */
  timeoutMs?: number;
}

/** What the demo did, for callers that check it. */
export interface DemoResult {
  /** Messages sent (one-to-one and group). */
  messages: number;
  /** Messages decrypted by recipient devices (including the copies on the sender's own devices). */
  deliveries: number;
  /** Ciphertext bytes the server delivered for them. */
  ciphertextBytes: number;
  /** The group's id. */
  groupId: string;
}

type Person = "ada" | "bao" | "cy";

interface DemoDevice {
  person: Person;
  /** e.g. "Bao's laptop". */
  name: string;
  client: SwitchboardClient;
  transport: Transport;
  /** Envelopes this device received, by server id: what the server delivered. */
  envelopes: Map<string, Envelope>;
  /** Messages (and own-device copies) this device decrypted, in order. */
  received: Received[];
  problems: string[];
  online: boolean;
}

interface Received {
  text: string;
  kind: "message" | "sync";
  meta: EnvelopeMeta;
  envelope: Envelope | undefined;
}

const APP_OF: Record<Person, string> = {
  ada: "WhatsApp-style",
  bao: "Messenger-style",
  cy: "Instagram-style",
};
const NAME_OF: Record<Person, string> = { ada: "Ada", bao: "Bao", cy: "Cy" };

/**
 * Runs the scripted conversation against a running system and writes the report to `out`:
 * users on all three apps (fresh random handles, so reruns do not collide), one-to-one messages
 * across apps, an Instagram-style message request that is listed and accepted, a group across the
 * apps, and an offline device catching up in order. Throws an Error with a readable message when
 * a service is unreachable, something is not delivered within `timeoutMs`, or a ciphertext
 * contains its plaintext. Closes every client it opened.
 */
export async function runDemo(
  endpoints: DemoEndpoints,
  out: DemoOutput,
  options: DemoOptions = {},
): Promise<DemoResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const say = (line = "") => void out.write(`${line}\n`);
  const run = randomBytes(3).toString("hex");

  say(`Switchboard demo (run ${run})`);
  say(`  delivery ${endpoints.delivery}   WhatsApp-style ${endpoints.whatsapp}`);
  say(`  Messenger-style ${endpoints.messenger}   Instagram-style ${endpoints.instagram}`);
  await checkReachable(endpoints, timeoutMs);

  const devices: DemoDevice[] = [];
  const result: DemoResult = { messages: 0, deliveries: 0, ciphertextBytes: 0, groupId: "" };
  try {
    const open = async (person: Person, name: string, transport: Transport): Promise<DemoDevice> => {
      const envelopes = new Map<string, Envelope>();
      const client = await createClient({
        transport: tapped(transport, envelopes),
        store: createMemoryStore(),
        preKeyBatchSize: 10,
        reconnectDelayMs: { initial: 200, max: 2_000 },
      });
      const device: DemoDevice = {
        person,
        name,
        client,
        transport,
        envelopes,
        received: [],
        problems: [],
        online: false,
      };
      client.on("message", ({ meta, message }) => {
        device.received.push({ text: message.text, kind: "message", meta, envelope: envelopes.get(meta.id) });
      });
      client.on("sync", ({ meta, message }) => {
        device.received.push({ text: message.text, kind: "sync", meta, envelope: envelopes.get(meta.id) });
      });
      client.on(
        "decryptionFailed",
        ({ error }) => void device.problems.push(`decryption failed: ${describe(error)}`),
      );
      client.on("error", ({ error, context }) => void device.problems.push(`${context}: ${describe(error)}`));
      devices.push(device);
      return device;
    };
    const waitFor = async (what: string, condition: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + timeoutMs;
      while (!(await condition())) {
        if (Date.now() > deadline) {
          const problems = devices.flatMap((d) => d.problems.map((p) => `  ${d.name}: ${p}`));
          throw new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}` +
              (problems.length > 0 ? `\nclient problems:\n${problems.join("\n")}` : ""),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const goOnline = async (d: DemoDevice) => {
      let drained = false;
      const off = d.client.on("queueEmpty", () => void (drained = true));
      d.client.start();
      d.online = true;
      await waitFor(`${d.name} to connect`, () => drained);
      off();
    };

    // ---- 1. users on three apps --------------------------------------------------------------
    say();
    say("1. Three people, three apps");
    const phone = `+1555${String(randomInt(10_000_000)).padStart(7, "0")}`;
    const verificationCode = async (number: string) => {
      const res = await fetch(`${endpoints.whatsappAdmin}/admin/codes/${encodeURIComponent(number)}`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok)
        throw new Error(
          `the WhatsApp-style gateway's dev admin endpoint answered ${res.status}: is it running with DEV_ADMIN=true?`,
        );
      return ((await res.json()) as { code: string }).code;
    };
    const ada = await open(
      "ada",
      "Ada's phone",
      createWhatsAppTransport({ target: endpoints.whatsapp, verificationCode }),
    );
    const adaAccount = await ada.client.registerAccount({
      handle: { app: App.WHATSAPP, value: phone },
      appToken: "",
      deviceName: "phone",
    });

    const baoPhone = await open(
      "bao",
      "Bao's phone",
      createMessengerTransport({ baseUrl: endpoints.messenger }),
    );
    const baoAccount = await baoPhone.client.registerAccount({
      handle: { app: App.MESSENGER, value: "" },
      appToken: "",
      deviceName: "phone",
    });
    const baoLaptop = await open(
      "bao",
      "Bao's laptop",
      createMessengerTransport({ baseUrl: endpoints.messenger }),
    );
    await baoLaptop.client.registerDevice({
      accountId: baoAccount.accountId,
      appToken: (baoPhone.transport as MessengerTransport).accessToken ?? "",
      deviceName: "laptop",
    });
    await baoPhone.client.refreshOwnDevices();
    const baoId = (await baoPhone.client.getAccount(baoAccount.accountId))?.account?.handle?.value ?? "?";

    const username = `cy_${run}`;
    const cy = await open("cy", "Cy's phone", createInstagramTransport({ baseUrl: endpoints.instagram }));
    const cyAccount = await cy.client.registerAccount({
      handle: { app: App.INSTAGRAM, value: username },
      appToken: "",
      deviceName: "phone",
    });
    const accountOf: Record<Person, string> = {
      ada: adaAccount.accountId,
      bao: baoAccount.accountId,
      cy: cyAccount.accountId,
    };
    // The WhatsApp-style API addresses people by JID: Ada's client looks the others up once.
    await ada.client.resolveHandle({ app: App.MESSENGER, value: baoId });
    await ada.client.resolveHandle({ app: App.INSTAGRAM, value: username });

    say(`   Ada  ${APP_OF.ada.padEnd(16)} phone number ${phone}        JID ${phone.slice(1)}@s.whatsapp.net`);
    say(`   Bao  ${APP_OF.bao.padEnd(16)} user id ${baoId.padEnd(17)}  devices: phone, laptop`);
    say(`   Cy   ${APP_OF.cy.padEnd(16)} username ${username}`);
    say(
      "   Every device made its own identity key and pre-keys on the client; the server has only the public halves.",
    );

    await goOnline(ada);
    await goOnline(baoPhone);
    await goOnline(cy);
    say("   Bao's laptop stays offline for now.");

    // ---- the conversation helpers ------------------------------------------------------------
    const sent: { from: DemoDevice; to: Person | "group"; text: string }[] = [];
    const report = (d: DemoDevice, r: Received) => {
      const what = r.kind === "sync" ? "gets its own copy" : "decrypts";
      say(`      ${d.name.padEnd(13)} ${what.padEnd(17)} "${r.text}"`);
      say(`      ${"".padEnd(13)} server delivered  ${describeEnvelope(r.envelope)}`);
      checkCiphertext(r);
      result.deliveries++;
      result.ciphertextBytes += r.envelope?.content.length ?? 0;
    };
    /** Devices that should get `from`'s message to `to`: recipients, and the sender's other devices. */
    const audience = (from: DemoDevice, to: Person | "group") =>
      devices.filter((d) => d !== from && (d.person === from.person || to === "group" || d.person === to));
    const receivedBy = (d: DemoDevice, text: string) => d.received.find((r) => r.text === text);
    const send = async (from: DemoDevice, to: Person | "group", text: string) => {
      result.messages++;
      sent.push({ from, to, text });
      const target = to === "group" ? "the group" : `${NAME_OF[to]} (${APP_OF[to]})`;
      say(`   ${NAME_OF[from.person]} (${APP_OF[from.person]}) → ${target}: "${text}"`);
      const r =
        to === "group"
          ? await from.client.sendGroupMessage(result.groupId, { text })
          : await from.client.sendMessage(accountOf[to], { text });
      if (r.kind !== "sent") throw new Error(`${from.name} could not send to ${target}: ${r.kind}`);
    };
    /** Sends and shows what every online device of the audience decrypted, next to the envelope it got. */
    const converse = async (from: DemoDevice, to: Person | "group", text: string) => {
      await send(from, to, text);
      const online = audience(from, to).filter((d) => d.online);
      await waitFor(`"${text}" to reach ${online.map((d) => d.name).join(", ")}`, () =>
        online.every((d) => receivedBy(d, text) !== undefined),
      );
      for (const d of online) {
        const r = receivedBy(d, text);
        if (r) report(d, r);
      }
    };

    // ---- 2. one to one, across apps -----------------------------------------------------------
    say();
    say("2. One to one, across apps");
    await converse(baoPhone, "ada", "Hi Ada! Bao here, writing from Messenger.");
    await converse(ada, "bao", "Hey Bao! Ada on WhatsApp. Different apps, same conversation.");

    // ---- 3. a message request on Instagram ----------------------------------------------------
    say();
    say("3. A message request on Instagram");
    const request = "Hi Cy, it's Ada. Bao says you'd like to join our trip chat?";
    await send(ada, "cy", request);
    const igToken = (cy.transport as InstagramTransport).accessToken ?? "";
    type Pending = {
      threads: { thread_id: string; sender: { account_id: string; ref?: string }; item_count: number }[];
    };
    let held: Pending["threads"][number] | undefined;
    await waitFor("Ada's message to show up in Cy's requests folder", async () => {
      const res = await fetch(`${endpoints.instagram}/v1/direct/pending`, {
        headers: { authorization: `Bearer ${igToken}` },
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) throw new Error(`listing Cy's message requests answered ${res.status}`);
      held = ((await res.json()) as Pending).threads.find((t) => t.sender.account_id === accountOf.ada);
      return held !== undefined;
    });
    say(
      `      Cy has not accepted Ada yet, so the gateway holds it: requests folder lists thread ${held?.thread_id ?? "?"}` +
        ` from ${held?.sender.ref ?? accountOf.ada} (${held?.item_count ?? 0} item).`,
    );
    if (receivedBy(cy, request) !== undefined)
      throw new Error("the message request reached Cy before she accepted it");
    say("      Nothing has reached Cy's phone. Cy accepts the request.");
    const accepted = await fetch(`${endpoints.instagram}/v1/direct/pending/${held?.thread_id ?? ""}/accept`, {
      method: "POST",
      headers: { authorization: `Bearer ${igToken}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!accepted.ok) throw new Error(`accepting the message request answered ${accepted.status}`);
    await waitFor("the accepted request to reach Cy's phone", () => receivedBy(cy, request) !== undefined);
    const released = receivedBy(cy, request);
    if (released) report(cy, released);
    await converse(cy, "ada", "Hi Ada! Accepted. Count me in.");
    await converse(cy, "bao", "Hi Bao, Cy here, on Instagram.");
    await converse(baoPhone, "cy", "Welcome aboard, Cy!");

    // ---- 4. a group across the apps -----------------------------------------------------------
    say();
    say("4. A group across the apps");
    const group = await ada.client.createGroup([accountOf.bao, accountOf.cy]);
    result.groupId = group.id;
    say(`   Ada creates group ${group.id} (JID ${group.id}@g.us; a thread on the other apps).`);
    say("   Each sender distributes its sender key pairwise, then sends one ciphertext the server fans out.");
    await converse(ada, "group", "Trip chat: three people, three apps, one group.");
    await converse(baoPhone, "group", "Bao in. I'll bring the maps.");
    await converse(cy, "group", "Cy in. Photos are on me.");

    // ---- 5. the offline device catches up -----------------------------------------------------
    say();
    say("5. Bao's laptop comes online and catches up, in order");
    const missed = sent.filter((s) => audience(s.from, s.to).includes(baoLaptop));
    await goOnline(baoLaptop);
    await waitFor(`Bao's laptop to catch up on ${missed.length} messages`, () =>
      missed.every((s) => receivedBy(baoLaptop, s.text) !== undefined),
    );
    for (const r of baoLaptop.received) report(baoLaptop, r);
    const order = baoLaptop.received.map((r) => r.text);
    if (order.join("\n") !== missed.map((s) => s.text).join("\n"))
      throw new Error(`Bao's laptop caught up out of order:\n${order.join("\n")}`);

    const problems = devices.flatMap((d) => d.problems.map((p) => `${d.name}: ${p}`));
    if (problems.length > 0) throw new Error(`clients reported problems:\n${problems.join("\n")}`);
    say();
    say(
      `Done: ${result.messages} messages, ${result.deliveries} decryptions on ${devices.length} devices. ` +
        `The server handled ${result.ciphertextBytes} bytes of ciphertext for them and never the text.`,
    );
    return result;
  } finally {
    for (const d of devices) {
      await d.client.close().catch(() => undefined);
      await d.transport.close().catch(() => undefined);
    }
  }
}

/** Fails early, naming the service, when something in `endpoints` does not answer. */
async function checkReachable(endpoints: DemoEndpoints, timeoutMs: number): Promise<void> {
  const checks: [string, string, () => Promise<void>][] = [
    ["the delivery service", endpoints.delivery, () => tcpConnect(endpoints.delivery, timeoutMs)],
    ["the WhatsApp-style gateway", endpoints.whatsapp, () => tcpConnect(endpoints.whatsapp, timeoutMs)],
    [
      "the WhatsApp-style gateway's dev admin endpoint",
      endpoints.whatsappAdmin,
      () => tcpConnect(new URL(endpoints.whatsappAdmin).host, timeoutMs),
    ],
    [
      "the Messenger-style gateway",
      endpoints.messenger,
      () => httpOk(`${endpoints.messenger}/healthz`, timeoutMs),
    ],
    [
      "the Instagram-style gateway",
      endpoints.instagram,
      () => httpOk(`${endpoints.instagram}/healthz`, timeoutMs),
    ],
  ];
  for (const [what, where, check] of checks) {
    try {
      await check();
    } catch (err) {
      throw new Error(
        `cannot reach ${what} at ${where} (${describe(err)}). Start the system first (pnpm start), ` +
          "or point the demo at it (pnpm demo -- --help).",
        { cause: err },
      );
    }
  }
}

function tcpConnect(hostPort: string, timeoutMs: number): Promise<void> {
  const colon = hostPort.lastIndexOf(":");
  const host = hostPort.slice(0, colon).replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(hostPort.slice(colon + 1));
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once("connect", () => {
      socket.destroy();
      resolve();
    });
    socket.once("timeout", () => {
      socket.destroy();
      reject(new Error("timed out"));
    });
    socket.once("error", reject);
  });
}

async function httpOk(url: string, timeoutMs: number): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  await res.body?.cancel();
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
}

/** `transport` with every envelope it receives recorded in `seen` by server id. */
function tapped(transport: Transport, seen: Map<string, Envelope>): Transport {
  return new Proxy(transport, {
    get(target, prop) {
      if (prop === "receive")
        return (options?: ReceiveOptions) => tapSubscription(target.receive(options), seen);
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function tapSubscription(
  subscription: ReceiveSubscription,
  seen: Map<string, Envelope>,
): ReceiveSubscription {
  return {
    close: () => subscription.close(),
    async *[Symbol.asyncIterator]() {
      for await (const event of subscription) {
        if (event.kind === "envelope") seen.set(event.envelope.id, event.envelope);
        yield event;
      }
    },
  };
}

/** "PREKEY_MESSAGE, 1842 bytes: 33 08 9d …": what the server had of a message. */
function describeEnvelope(envelope: Envelope | undefined): string {
  if (envelope === undefined) return "(not seen)";
  const bytes = envelope.content;
  const head = Buffer.from(bytes.subarray(0, 12))
    .toString("hex")
    .replace(/(..)(?!$)/g, "$1 ");
  return `${EnvelopeType[envelope.type] ?? envelope.type}, ${bytes.length} bytes: ${head} …`;
}

/** The text must not be in the bytes the server delivered (it never is: they are ciphertext). */
function checkCiphertext(r: Received): void {
  if (r.envelope === undefined) throw new Error(`no envelope was seen for "${r.text}"`);
  if (r.text !== "" && Buffer.from(r.envelope.content).includes(Buffer.from(r.text)))
    throw new Error(`the server delivered "${r.text}" in the clear`);
}

/** An error's message, with its cause's (fetch says only "fetch failed"; the cause says why). */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message;
}
