import { randomUUID } from "node:crypto";
import { App, RequestsPolicy } from "@switchboard/proto";
import { createClient, createMemoryStore, createMessengerTransport } from "@switchboard/sdk";
import { listReportsAgainst } from "@switchboard/storage";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  api,
  fakeBody,
  openStream,
  signup,
  startStack,
  textOf,
  type Gateway,
  type TestUser,
} from "./harness.js";

function send(gw: Gateway, from: TestUser, to: TestUser, text: string) {
  return api<Record<string, unknown>>(gw, "POST", "/v1/me/messages", {
    token: from.token,
    body: {
      recipient: { id: to.userId },
      message: {
        mid: randomUUID(),
        ciphertexts: [
          { device_id: 1, registration_id: to.registrationId, type: "ciphertext", body: fakeBody(text) },
        ],
      },
    },
  });
}

async function signupMinor(gw: Gateway): Promise<TestUser> {
  const r = await api<{
    user: { account_id: string; id: string };
    device: { device_id: number; registration_id: number };
    access_token: string;
  }>(gw, "POST", "/v1/signup", { body: { registration_id: 77, minor: true } });
  expect(r.status).toBe(201);
  return {
    userId: r.body.user.id,
    accountId: r.body.user.account_id,
    deviceId: r.body.device.device_id,
    registrationId: r.body.device.registration_id,
    token: r.body.access_token,
  };
}

describe("message requests (Messenger-style)", () => {
  test("strangers' messages arrive marked; with the hold policy they wait in /v1/me/requests until accepted", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const bStream = await openStream(gateway, b);
    expect((await send(gateway, a, b, "marked")).status).toBe(200);
    await bStream.until(() => bStream.messages().length === 1);
    expect(bStream.messages()[0]).toMatchObject({ message_request: true });

    const c = await signup(gateway);
    const policy = await api(gateway, "PUT", "/v1/me/settings/requests_policy", {
      token: b.token,
      body: { policy: "hold" },
    });
    expect(policy).toMatchObject({ status: 200, body: { policy: "hold" } });
    expect((await send(gateway, c, b, "held 1")).status).toBe(200);
    expect((await send(gateway, c, b, "held 2")).status).toBe(200);
    const list = await api<{ requests: Array<Record<string, unknown>> }>(gateway, "GET", "/v1/me/requests", {
      token: b.token,
    });
    expect(list.status).toBe(200);
    expect(list.body.requests).toHaveLength(1);
    expect(list.body.requests[0]).toMatchObject({
      sender: { account_id: c.accountId, app: "messenger", id: c.userId },
      message_count: 2,
    });
    const previews = list.body.requests[0]?.messages as Array<{ body: string; message_request: boolean }>;
    expect(previews.map((m) => textOf(m))).toEqual(["held 1", "held 2"]);
    expect(bStream.messages()).toHaveLength(1);

    const accepted = await api(gateway, "POST", `/v1/me/requests/${c.userId}/accept`, { token: b.token });
    expect(accepted).toMatchObject({ status: 200, body: { released: 2 } });
    await bStream.until(() => bStream.messages().length === 3);
    expect(
      bStream
        .messages()
        .slice(1)
        .map((m) => textOf(m)),
    ).toEqual(["held 1", "held 2"]);

    const bad = await api(gateway, "PUT", "/v1/me/settings/requests_policy", {
      token: b.token,
      body: { policy: "sometimes" },
    });
    expect(bad.status).toBe(400);
  });

  test("decline and block through the API; a blocked sender still gets 200", async () => {
    const { gateway, backend } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    await api(gateway, "PUT", "/v1/me/settings/requests_policy", {
      token: b.token,
      body: { policy: "hold" },
    });
    await send(gateway, a, b, "one");
    const declined = await api(gateway, "POST", `/v1/me/requests/${a.userId}/decline`, { token: b.token });
    expect(declined).toMatchObject({ status: 200, body: { deleted: 1 } });
    expect((await api(gateway, "PUT", `/v1/me/blocks/${a.userId}`, { token: b.token })).status).toBe(204);
    const after = await send(gateway, a, b, "two");
    expect(after.status).toBe(200);
    const list = await api<{ requests: unknown[] }>(gateway, "GET", "/v1/me/requests", { token: b.token });
    expect(list.body.requests).toHaveLength(0);
    expect((await api(gateway, "DELETE", `/v1/me/blocks/${a.userId}`, { token: b.token })).status).toBe(204);
    await send(gateway, a, b, "three");
    const again = await api<{ requests: unknown[] }>(gateway, "GET", "/v1/me/requests", { token: b.token });
    expect(again.body.requests).toHaveLength(1);
    const unknown = await api(gateway, "PUT", "/v1/me/blocks/999999999", { token: b.token });
    expect(unknown.status).toBe(404);
    expect(backend).toBeDefined();
  });

  test("a minor signed up with the age signal gets nothing from adult strangers; the adult sees 200", async () => {
    const { gateway } = await startStack();
    const adult = await signup(gateway);
    const minor = await signupMinor(gateway);
    const stream = await openStream(gateway, minor);
    await stream.until(() => stream.events.some((e) => e.type === "queue_empty"));
    const sent = await send(gateway, adult, minor, "hello");
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({ recipient_id: minor.accountId, duplicate: false });
    const list = await api<{ requests: unknown[] }>(gateway, "GET", "/v1/me/requests", {
      token: minor.token,
    });
    expect(list.body.requests).toHaveLength(0);
    // The minor writes first: the adult's reply arrives.
    await send(gateway, minor, adult, "hi");
    await send(gateway, adult, minor, "reply");
    await stream.until(() => stream.messages().length === 1);
    expect(textOf(stream.messages()[0] ?? {})).toBe("reply");
    // A group invitation from another adult stranger does not add the minor.
    const stranger = await signup(gateway);
    const g = await api<{ members: Array<{ user: { account_id: string } }> }>(gateway, "POST", "/v1/groups", {
      token: stranger.token,
      body: { members: [{ id: minor.userId }, { id: adult.userId }] },
    });
    expect(g.status).toBe(201);
    expect(g.body.members.map((m) => m.user.account_id).sort()).toEqual(
      [stranger.accountId, adult.accountId].sort(),
    );
  });
});

/** An SDK client signed up on the gateway, recording messages and decryption failures. */
async function sdkUser(gw: Gateway) {
  const transport = createMessengerTransport({ baseUrl: gw.url });
  const store = createMemoryStore();
  const client = await createClient({ transport, store, preKeyBatchSize: 10 });
  const texts: string[] = [];
  const ids: string[] = [];
  const failures: unknown[] = [];
  client.on("message", (e) => {
    texts.push(e.message.text);
    ids.push(e.meta.id);
  });
  client.on("decryptionFailed", (e) => void failures.push(e.error));
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  const { accountId } = await client.registerAccount({
    handle: { app: App.MESSENGER, value: "" },
    appToken: "",
  });
  return { client, store, texts, ids, failures, accountId };
}

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("message request previews and reports through the SDK (Messenger-style)", () => {
  test("lists held requests with envelopes, previews one, emits it once after acceptance, reports and blocks another", async () => {
    const { backend, gateway } = await startStack();
    const alice = await sdkUser(gateway);
    const carol = await sdkUser(gateway);
    const bob = await sdkUser(gateway);
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "hello from a stranger" });
    await carol.client.sendMessage(bob.accountId, { text: "click this link" });

    const listed = await bob.client.listMessageRequests();
    expect(listed.map((q) => q.peerAccountId).sort()).toEqual([alice.accountId, carol.accountId].sort());
    for (const q of listed) {
      expect(q.peerHandle?.app).toBe(App.MESSENGER);
      expect(q.envelopes).toHaveLength(1);
      expect(q.envelopes[0]?.serverFrankingTag.byteLength).toBe(32);
      expect(q.envelopes[0]?.source?.accountId).toBe(q.peerAccountId);
    }
    const previews = await bob.client.previewMessageRequests();
    const fromAlice = previews.find((p) => p.peerAccountId === alice.accountId);
    expect(fromAlice?.messages.map((m) => m.message.text)).toEqual(["hello from a stranger"]);
    expect(fromAlice?.failed).toEqual([]);
    expect(bob.texts).toEqual([]);

    await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId });
    await waitFor(() => bob.texts.length > 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(bob.texts).toEqual(["hello from a stranger"]);
    expect(bob.ids).toEqual([fromAlice?.messages[0]?.meta.id]);
    expect(bob.failures).toEqual([]);

    const r = await bob.client.reportMessageRequest({ peerAccountId: carol.accountId, reason: "phishing" });
    expect(r).toMatchObject({ unfranked: 0, undecryptable: 0, blocked: true });
    expect(r.reported).toHaveLength(1);
    const stored = await listReportsAgainst(backend.deliveryDb, carol.accountId);
    expect(stored.map((row) => row.id)).toEqual([r.reported[0]?.reportId]);
    expect(stored[0]?.reporter_account_id).toBe(bob.accountId);
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toContain("click this link");
    const held = await backend.deliveryDb
      .selectFrom("queued_messages")
      .select("message_id")
      .where("account_id", "=", bob.accountId)
      .where("source_account_id", "=", carol.accountId)
      .execute();
    expect(held).toEqual([]);
    expect(await bob.client.listMessageRequests()).toEqual([]);

    // The blocked sender's next message never arrives; alice's, sent after it, does.
    expect((await carol.client.sendMessage(bob.accountId, { text: "still there?" })).kind).toBe("sent");
    await alice.client.sendMessage(bob.accountId, { text: "marker" });
    await waitFor(() => bob.texts.length > 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(bob.texts).toEqual(["hello from a stranger", "marker"]);
  });
});
