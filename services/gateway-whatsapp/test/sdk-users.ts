// SDK clients on the WhatsApp-style app for the gateway's end-to-end tests: open a client over
// createWhatsAppTransport with every event recorded, register a number, wait for events.
import type { BidiOpener } from "@switchboard/grpc";
import { App } from "@switchboard/proto";
import {
  createClient,
  createMemoryStore,
  createWhatsAppTransport,
  type ClientEvents,
  type ClientStore,
  type SwitchboardClient,
  type WhatsAppSession,
  type WhatsAppTransport,
  recordEvents,
  type RecordedEvents,
} from "@switchboard/sdk";
import { onTestFinished } from "vitest";
import { fetchCode, newPhone, type Stack } from "./harness.js";

/** Every event a client emitted, by name. */
export type Recorded = RecordedEvents;

export interface WaUser {
  client: SwitchboardClient;
  transport: WhatsAppTransport;
  store: ClientStore;
  events: Recorded;
  sessions: WhatsAppSession[];
  phone: string;
  accountId: string;
  deviceId: number;
}

/** A client for `phone` (new by default), optionally resuming a saved store and session; closed after the test. */
export async function openUser(
  stack: Stack,
  phone = newPhone(),
  saved: { store?: ClientStore; session?: WhatsAppSession; openChat?: BidiOpener } = {},
): Promise<Omit<WaUser, "accountId" | "deviceId">> {
  const sessions: WhatsAppSession[] = [];
  const transport = createWhatsAppTransport({
    target: stack.target,
    verificationCode: (p) => fetchCode(stack, p),
    onSession: (s) => void sessions.push(s),
    session: saved.session,
    openChat: saved.openChat,
  });
  const store = saved.store ?? createMemoryStore();
  const client = await createClient({ transport, store });
  const events = recordEvents(client);
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  return { client, transport, store, events, sessions, phone };
}

/** Registers a number through RequestCode / VerifyCode (the code comes from the dev admin endpoint). */
export async function registerUser(stack: Stack, openChat?: BidiOpener): Promise<WaUser> {
  const u = await openUser(stack, newPhone(), { openChat });
  const r = await u.client.registerAccount({ handle: { app: App.WHATSAPP, value: u.phone }, appToken: "" });
  return { ...u, accountId: r.accountId, deviceId: r.deviceId };
}

/** Waits until `u` has recorded `count` events `name`; returns them. */
export async function until<K extends keyof ClientEvents>(
  u: { events: Recorded },
  name: K,
  count = 1,
  timeoutMs = 15_000,
) {
  const started = Date.now();
  while (u.events[name].length < count) {
    if (Date.now() - started > timeoutMs)
      throw new Error(`expected ${count} ${name} event(s), got ${u.events[name].length}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return u.events[name];
}
