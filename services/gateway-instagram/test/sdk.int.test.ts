// The SDK client over the Instagram-style gateway: libsignal end-to-end encryption through the
// native API (InstagramTransport), next to a WhatsApp-style client on the delivery API directly.
import { randomUUID } from "node:crypto";
import { App } from "@switchboard/proto";
import {
  createClient,
  createDeliveryTransport,
  createInstagramTransport,
  createMemoryStore,
  type ClientEvents,
  type InstagramTransport,
  type SwitchboardClient,
  type Transport,
  recordEvents,
  type RecordedEvents,
} from "@switchboard/sdk";
import { describe, expect, it, onTestFinished } from "vitest";
import { api, sleep, startStack, TOKENS } from "./harness.js";

type Recorded = RecordedEvents;

interface TestClient {
  client: SwitchboardClient;
  transport: Transport;
  events: Recorded;
  accountId: string;
  deviceId: number;
}

async function open(transport: Transport): Promise<Omit<TestClient, "accountId" | "deviceId">> {
  const client = await createClient({ transport, store: createMemoryStore() });
  const events = recordEvents(client);
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  return { client, transport, events };
}

/** Signs up an Instagram-style user through the gateway with the SDK and starts receiving. */
async function igUser(
  baseUrl: string,
): Promise<TestClient & { transport: InstagramTransport; username: string }> {
  const transport = createInstagramTransport({ baseUrl });
  const opened = await open(transport);
  const username = `sdk_${randomUUID().slice(0, 8)}`;
  const { accountId, deviceId } = await opened.client.registerAccount({
    handle: { app: App.INSTAGRAM, value: username },
    appToken: "unused: the gateway registers its own users",
  });
  opened.client.start();
  return { ...opened, transport, accountId, deviceId, username };
}

let phone = 15_550_000_000 + Math.floor(Math.random() * 1_000_000) * 100;

/** A WhatsApp-style user on the delivery API directly (the SDK's own gRPC transport). */
async function waUser(target: string): Promise<TestClient> {
  const opened = await open(createDeliveryTransport({ target }));
  const { accountId, deviceId } = await opened.client.registerAccount({
    handle: { app: App.WHATSAPP, value: `+${phone++}` },
    appToken: TOKENS.whatsapp,
  });
  opened.client.start();
  return { ...opened, accountId, deviceId };
}

async function until<K extends keyof ClientEvents>(
  c: { events: Recorded },
  name: K,
  count = 1,
  timeoutMs = 20_000,
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

/** Waits until `user` has a pending request (from `fromAccountId`) with `count` items; returns its thread. */
async function pendingFrom(
  baseUrl: string,
  user: { transport: InstagramTransport },
  fromAccountId: string,
  count: number,
) {
  for (let i = 0; i < 200; i++) {
    const r = await api<{
      threads: { thread_id: string; sender: { account_id: string }; item_count: number }[];
    }>(baseUrl, "GET", "/v1/direct/pending", { token: user.transport.accessToken });
    const t = r.body.threads.find((x) => x.sender.account_id === fromAccountId);
    if (t && t.item_count >= count) return t.thread_id;
    await sleep(50);
  }
  throw new Error("no pending request");
}

const clean = (...cs: TestClient[]) => {
  for (const c of cs)
    expect([c.events.decryptionFailed, c.events.error.map((e) => String(e.error))]).toEqual([[], []]);
};

describe("the SDK over the Instagram-style gateway", () => {
  it("exchanges end-to-end-encrypted messages after a message request is accepted, with delivery receipts", async () => {
    const { gateway } = await startStack();
    const ada = await igUser(gateway.url);
    const bob = await igUser(gateway.url);
    await until(bob, "queueEmpty");

    const first = await ada.client.sendMessage(bob.accountId, { text: "hi bob, it's ada" });
    expect(first.kind).toBe("sent");
    const threadId = await pendingFrom(gateway.url, bob, ada.accountId, 1);
    await sleep(200);
    expect(bob.events.message).toEqual([]);

    const accepted = await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/accept`, {
      token: bob.transport.accessToken,
    });
    expect(accepted.status).toBe(200);
    await until(bob, "message");
    expect(texts(bob)).toEqual(["hi bob, it's ada"]);
    expect(bob.events.message[0]?.meta.sender).toEqual({ accountId: ada.accountId, deviceId: 1 });

    await bob.client.sendMessage(ada.accountId, { text: "hello ada" });
    await until(ada, "message");
    await ada.client.sendMessage(bob.accountId, { text: "ratchet turns" });
    await until(bob, "message", 2);
    expect(texts(bob)).toEqual(["hi bob, it's ada", "ratchet turns"]);
    expect(texts(ada)).toEqual(["hello ada"]);

    const receipts = await until(ada, "deliveryReceipt");
    expect(receipts.map((r) => r.meta.clientMessageId)).toContain(
      first.kind === "sent" ? first.clientMessageId : "",
    );
    expect((await ada.client.safetyNumber(bob.accountId, 1))?.displayable).toBe(
      (await bob.client.safetyNumber(ada.accountId, 1))?.displayable,
    );
    expect(await ada.client.resolveHandle({ app: App.INSTAGRAM, value: bob.username })).toMatchObject({
      account: { id: bob.accountId },
    });
    expect(await ada.client.resolveHandle({ app: App.INSTAGRAM, value: "nobody_here_42" })).toBeUndefined();
    clean(ada, bob);
  });

  it("deletes a declined request: only messages after it reach the recipient", async () => {
    const { gateway } = await startStack();
    const ada = await igUser(gateway.url);
    const bob = await igUser(gateway.url);
    await until(bob, "queueEmpty");

    await ada.client.sendMessage(bob.accountId, { text: "unsolicited" });
    const threadId = await pendingFrom(gateway.url, bob, ada.accountId, 1);
    const declined = await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/decline`, {
      token: bob.transport.accessToken,
    });
    expect(declined.body).toMatchObject({ deleted_items: 1 });

    await ada.client.sendMessage(bob.accountId, { text: "sorry, second try" });
    await pendingFrom(gateway.url, bob, ada.accountId, 1);
    await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/accept`, {
      token: bob.transport.accessToken,
    });
    await until(bob, "message");
    await sleep(200);
    expect(texts(bob)).toEqual(["sorry, second try"]);
    clean(ada, bob);
  });

  it("sends to a group: held sender keys are released in order, and a group posted in by an accepted member is accepted", async () => {
    const { gateway } = await startStack();
    const ada = await igUser(gateway.url);
    const bob = await igUser(gateway.url);
    const cy = await igUser(gateway.url);
    // Bob and Ada talked before; Cy knows neither.
    await api(gateway.url, "POST", "/v1/direct/threads", {
      token: bob.transport.accessToken,
      body: { recipients: [ada.username] },
    });
    await ada.client.sendMessage(bob.accountId, { text: "let's start a group" });
    await until(bob, "message");

    const group = await ada.client.createGroup([bob.accountId, cy.accountId]);
    await ada.client.sendGroupMessage(group.id, { text: "welcome, both of you" });
    await until(bob, "message", 2);
    expect(bob.events.message[1]?.meta.groupId).toBe(group.id);

    // Ada's sender key and group message wait in Cy's requests; accepting releases them in order.
    const fromAda = await pendingFrom(gateway.url, cy, ada.accountId, 2);
    await api(gateway.url, "POST", `/v1/direct/pending/${fromAda}/accept`, {
      token: cy.transport.accessToken,
    });
    await until(cy, "message");
    expect(texts(cy)).toEqual(["welcome, both of you"]);

    // Bob accepted the whole group when Ada (whom he accepted) posted in it; Cy accepts its members by
    // posting. So everyone's sender keys and messages now flow live.
    await cy.client.sendGroupMessage(group.id, { text: "hi from cy" });
    await until(ada, "message");
    await until(bob, "message", 3);
    await bob.client.sendGroupMessage(group.id, { text: "hi from bob" });
    await until(ada, "message", 2);
    await until(cy, "message", 2);
    expect(texts(ada)).toEqual(["hi from cy", "hi from bob"]);
    expect(texts(cy)).toEqual(["welcome, both of you", "hi from bob"]);
    clean(ada, bob, cy);
  });

  it("links a second device, which signs in with its secret, and talks across apps with a WhatsApp-style user", async () => {
    const { gateway, deliveryTarget } = await startStack();
    const bob = await igUser(gateway.url);
    const laptop = await open(createInstagramTransport({ baseUrl: gateway.url }));
    const request = await laptop.client.createDeviceLinkRequest({
      accountId: bob.accountId,
      deviceName: "laptop",
    });
    const device = await bob.client.approveDeviceLink(request);
    const linked = await laptop.client.completeDeviceLink({
      accountId: bob.accountId,
      deviceId: device.deviceId,
    });
    expect(linked.deviceId).toBe(2);
    laptop.client.start();
    await until(laptop, "queueEmpty");

    const wa = await waUser(deliveryTarget);
    await wa.client.sendMessage(bob.accountId, { text: "hello from whatsapp" });
    const threadId = await pendingFrom(gateway.url, bob, wa.accountId, 1);
    await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/accept`, {
      token: bob.transport.accessToken,
    });
    await until(bob, "message");
    await until(laptop, "message");
    expect(texts(bob)).toEqual(["hello from whatsapp"]);
    expect(texts(laptop)).toEqual(["hello from whatsapp"]);

    await bob.client.sendMessage(wa.accountId, { text: "hello from instagram" });
    await until(wa, "message");
    expect(texts(wa)).toEqual(["hello from instagram"]);
    const synced = await until(laptop, "sync");
    expect(synced[0]).toMatchObject({
      destinationAccountId: wa.accountId,
      message: { text: "hello from instagram" },
    });
    clean(bob, wa, { ...laptop, accountId: bob.accountId, deviceId: 2 });
  });
});
