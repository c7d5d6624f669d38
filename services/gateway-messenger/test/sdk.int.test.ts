// The SDK client over the Messenger-style native API (MessengerTransport): real libsignal sessions,
// a real delivery service, this gateway in between.
import { App } from "@switchboard/proto";
import {
  createClient,
  createMemoryStore,
  createMessengerTransport,
  type ClientEvents,
  type ClientStore,
  type MessengerTransport,
  type SwitchboardClient,
  recordEvents,
  type RecordedEvents,
} from "@switchboard/sdk";
import { describe, expect, onTestFinished, test } from "vitest";
import { sleep, startStack, type Gateway } from "./harness.js";

type Recorded = RecordedEvents;

interface TestClient {
  client: SwitchboardClient;
  transport: MessengerTransport;
  store: ClientStore;
  events: Recorded;
  accountId: string;
  deviceId: number;
}

async function openClient(gw: Gateway, opts: { store?: ClientStore; accessToken?: string } = {}) {
  const transport = createMessengerTransport({ baseUrl: gw.url, accessToken: opts.accessToken });
  const store = opts.store ?? createMemoryStore();
  const client = await createClient({
    transport,
    store,
    preKeyBatchSize: 10,
    reconnectDelayMs: { initial: 50, max: 500 },
  });
  const events = recordEvents(client);
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  return { client, transport, store, events };
}

/** Signs up a Messenger-style user with the SDK (the gateway assigns the numeric id). */
async function signupClient(gw: Gateway): Promise<TestClient> {
  const opened = await openClient(gw);
  const { accountId, deviceId } = await opened.client.registerAccount({
    handle: { app: App.MESSENGER, value: "" },
    appToken: "",
  });
  return { ...opened, accountId, deviceId };
}

/** Adds a device to `primary`'s user: the primary's access token authorises the registration. */
async function addDeviceClient(gw: Gateway, primary: TestClient): Promise<TestClient> {
  const opened = await openClient(gw);
  const { accountId, deviceId } = await opened.client.registerDevice({
    accountId: primary.accountId,
    appToken: primary.transport.accessToken ?? "",
  });
  return { ...opened, accountId, deviceId };
}

async function until<K extends keyof ClientEvents>(
  c: { events: Recorded },
  name: K,
  count = 1,
  timeoutMs = 15_000,
) {
  const started = Date.now();
  while (c.events[name].length < count) {
    if (Date.now() - started > timeoutMs)
      throw new Error(
        `expected ${count} ${name} event(s), got ${c.events[name].length}: ${JSON.stringify(c.events.error.map((e) => String(e.error)))}`,
      );
    await sleep(20);
  }
  return c.events[name];
}

const texts = (c: { events: Recorded }) => c.events.message.map((m) => m.message.text);

describe("MessengerTransport", () => {
  test("two SDK clients exchange end-to-end-encrypted messages and delivery receipts", async () => {
    const { gateway } = await startStack();
    const alice = await signupClient(gateway);
    const bob = await signupClient(gateway);
    const profile = await alice.client.resolveHandle({
      app: App.MESSENGER,
      value: (await bob.client.getAccount(bob.accountId))?.account?.handle?.value ?? "",
    });
    expect(profile?.account?.id).toBe(bob.accountId);
    alice.client.start();
    bob.client.start();

    const sent = await alice.client.sendMessage(bob.accountId, { text: "hello bob" });
    expect(sent.kind).toBe("sent");
    await until(bob, "message");
    expect(bob.events.message[0]).toMatchObject({
      meta: { sender: { accountId: alice.accountId, deviceId: 1 }, urgent: true },
      message: { text: "hello bob" },
    });
    await bob.client.sendMessage(alice.accountId, { text: "hi alice" });
    await until(alice, "message");
    expect(texts(alice)).toEqual(["hi alice"]);
    await until(alice, "deliveryReceipt");
    expect(alice.events.deliveryReceipt[0]?.meta).toMatchObject({
      sender: { accountId: bob.accountId, deviceId: 1 },
      clientMessageId: sent.kind === "sent" ? sent.clientMessageId : "",
    });
    expect(bob.events.decryptionFailed).toHaveLength(0);
    expect(alice.events.decryptionFailed).toHaveLength(0);
  });

  test("a second device, an offline catch-up in order, a restart with a kept token and a group send", async () => {
    const { gateway } = await startStack();
    const alice = await signupClient(gateway);
    const alice2 = await addDeviceClient(gateway, alice);
    expect(alice2.deviceId).toBe(2);
    const bob = await signupClient(gateway);
    alice.client.start();
    bob.client.start();

    // alice2 is offline: it catches up in order when it connects.
    for (const text of ["one", "two", "three"]) await bob.client.sendMessage(alice.accountId, { text });
    await until(alice, "message", 3);
    expect(texts(alice)).toEqual(["one", "two", "three"]);
    alice2.client.start();
    await until(alice2, "message", 3);
    expect(texts(alice2)).toEqual(["one", "two", "three"]);

    // Restart bob on a new transport with the token he kept, over the same store.
    const token = bob.transport.accessToken;
    await bob.client.close();
    await bob.transport.close();
    const bobAgain = await openClient(gateway, { store: bob.store, accessToken: token });
    bobAgain.client.start();
    // alice's first device learns of the second one from the directory, so it gets sync copies.
    expect(await alice.client.refreshOwnDevices()).toEqual([2]);
    await alice.client.sendMessage(bob.accountId, { text: "after restart" });
    await until(bobAgain, "message");
    expect(texts(bobAgain)).toEqual(["after restart"]);
    await until(alice2, "sync");
    expect(alice2.events.sync.at(-1)).toMatchObject({
      destinationAccountId: bob.accountId,
      message: { text: "after restart" },
    });

    // A group thread: one sender-key ciphertext, fanned out by the server.
    const group = await alice.client.createGroup([bob.accountId]);
    const groupSent = await alice.client.sendGroupMessage(group.id, { text: "hello group" });
    expect(groupSent.kind).toBe("sent");
    await until(bobAgain, "message", 2);
    expect(bobAgain.events.message[1]).toMatchObject({
      meta: { groupId: group.id },
      message: { text: "hello group" },
    });
    await bobAgain.client.sendGroupMessage(group.id, { text: "group reply" });
    await until(alice, "message", 4);
    await until(alice2, "message", 4);
    expect(alice.events.message[3]).toMatchObject({
      meta: { groupId: group.id },
      message: { text: "group reply" },
    });
    expect(alice2.events.message[3]).toMatchObject({
      meta: { groupId: group.id },
      message: { text: "group reply" },
    });
    for (const c of [alice, alice2, bobAgain]) expect(c.events.decryptionFailed).toHaveLength(0);
  });

  test("a typing indicator is ephemeral and reaches a connected device", async () => {
    const { gateway } = await startStack();
    const alice = await signupClient(gateway);
    const bob = await signupClient(gateway);
    alice.client.start();
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "first" });
    await until(bob, "message");
    await until(bob, "queueEmpty");
    await alice.client.sendTyping({ accountId: bob.accountId }, 1);
    await until(bob, "typing");
    expect(bob.events.typing[0]?.meta.ephemeral).toBe(true);
  });

  test("a second connection of the same device displaces the first", async () => {
    const { gateway } = await startStack();
    const alice = await signupClient(gateway);
    alice.client.start();
    await until(alice, "queueEmpty");
    const twin = await openClient(gateway, { store: alice.store, accessToken: alice.transport.accessToken });
    twin.client.start();
    await until(alice, "error");
    expect(alice.events.error[0]?.error).toMatchObject({ reason: "DISPLACED" });
  });
});
