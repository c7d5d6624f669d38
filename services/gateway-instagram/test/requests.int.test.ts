import { randomUUID } from "node:crypto";
import { App } from "@switchboard/proto";
import { createClient, createInstagramTransport, createMemoryStore } from "@switchboard/sdk";
import { listReportsAgainst, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { describe, expect, it, onTestFinished } from "vitest";
import { api, b64, openEvents, signUp, sleep, startStack, type IgUser } from "./harness.js";

async function openThread(base: string, from: IgUser, to: IgUser): Promise<string> {
  const r = await api<{ thread_id: string }>(base, "POST", "/v1/direct/threads", {
    token: from.token,
    body: { recipients: [to.username] },
  });
  if (r.status !== 200) throw new Error(`thread failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.thread_id;
}

function sendItem(base: string, from: IgUser, threadId: string, text: string, to: IgUser) {
  return api<{ server_id: string }>(base, "POST", `/v1/direct/threads/${threadId}/items`, {
    token: from.token,
    body: {
      client_context: randomUUID(),
      ciphertexts: [
        { device_id: 1, registration_id: to.registrationId, type: "ciphertext", body: b64(text) },
      ],
    },
  });
}

type Pending = { threads: { thread_id: string; sender: { account_id: string }; item_count: number }[] };

/** Polls the requests folder until `done` holds (items reach it as the device's queue drains). */
async function pendingUntil(base: string, user: IgUser, done: (p: Pending) => boolean): Promise<Pending> {
  let r = await api<Pending>(base, "GET", "/v1/direct/pending", { token: user.token });
  for (let i = 0; i < 200 && !done(r.body); i++) {
    await sleep(50);
    r = await api<Pending>(base, "GET", "/v1/direct/pending", { token: user.token });
  }
  return r.body;
}

async function signUpMinor(base: string): Promise<IgUser> {
  const username = `k_${randomUUID().slice(0, 8)}`;
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await api<{ account: { account_id: string }; access_token: string }>(
    base,
    "POST",
    "/v1/accounts",
    {
      body: {
        username,
        registration_id: registrationId,
        password: "correct horse battery staple",
        minor: true,
      },
    },
  );
  if (r.status !== 201) throw new Error(`sign-up failed: ${r.status}`);
  return { accountId: r.body.account.account_id, username, token: r.body.access_token, registrationId };
}

describe("blocks and minors (Instagram-style)", () => {
  it("blocks the sender of a request: its later items are answered 200 and never reach the folder", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const cy = await signUp(gateway.url);
    const events = await openEvents(gateway.url, bob.token);
    await events.until((e) => e.some((x) => x.event === "queue_empty"));
    const thread = await openThread(gateway.url, ada, bob);
    expect((await sendItem(gateway.url, ada, thread, "hi", bob)).status).toBe(200);
    const first = await pendingUntil(gateway.url, bob, (p) => p.threads.length === 1);
    expect(first.threads[0]?.sender.account_id).toBe(ada.accountId);

    const blocked = await api(gateway.url, "POST", `/v1/direct/pending/${thread}/block`, {
      token: bob.token,
    });
    expect(blocked).toMatchObject({ status: 200, body: { account_id: ada.accountId, deleted_items: 1 } });
    expect((await sendItem(gateway.url, ada, thread, "hello??", bob)).status).toBe(200);
    // A later stranger's request reaches the folder; the blocked one (queued before it) never does.
    const cyThread = await openThread(gateway.url, cy, bob);
    await sendItem(gateway.url, cy, cyThread, "hey", bob);
    const after = await pendingUntil(gateway.url, bob, (p) => p.threads.length >= 1);
    expect(after.threads.map((t) => t.sender.account_id)).toEqual([cy.accountId]);

    const unblocked = await api(gateway.url, "DELETE", `/v1/blocks/${ada.accountId}`, { token: bob.token });
    expect(unblocked.status).toBe(204);
    const bad = await api(gateway.url, "PUT", `/v1/blocks/not-a-uuid`, { token: bob.token });
    expect(bad.status).toBe(400);
  });

  it("a minor gets nothing from an adult stranger, who sees 200 as for anyone", async () => {
    const { gateway } = await startStack();
    const adult = await signUp(gateway.url);
    const minor = await signUpMinor(gateway.url);
    const otherMinor = await signUpMinor(gateway.url);
    const events = await openEvents(gateway.url, minor.token);
    await events.until((e) => e.some((x) => x.event === "queue_empty"));
    const thread = await openThread(gateway.url, adult, minor);
    const sent = await sendItem(gateway.url, adult, thread, "hi kid", minor);
    expect(sent.status).toBe(200);
    expect(sent.body.server_id).toEqual(expect.any(String));
    // Another minor's request (sent later) reaches the folder; the adult's never does.
    const kidThread = await openThread(gateway.url, otherMinor, minor);
    await sendItem(gateway.url, otherMinor, kidThread, "hi", minor);
    const pending = await pendingUntil(gateway.url, minor, (p) => p.threads.length >= 1);
    expect(pending.threads.map((t) => t.sender.account_id)).toEqual([otherMinor.accountId]);
    expect(events.events.filter((e) => e.event === "item")).toHaveLength(0);
  });
});

/** An SDK client signed up on the gateway and receiving, recording messages and failures. */
async function sdkUser(baseUrl: string) {
  const transport = createInstagramTransport({ baseUrl });
  const store = createMemoryStore();
  const client = await createClient({ transport, store, preKeyBatchSize: 10 });
  const texts: string[] = [];
  const ids: string[] = [];
  const failures: unknown[] = [];
  let drained = false;
  client.on("message", (e) => {
    texts.push(e.message.text);
    ids.push(e.meta.id);
  });
  client.on("decryptionFailed", (e) => void failures.push(e.error));
  client.on("queueEmpty", () => {
    drained = true;
  });
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  const { accountId } = await client.registerAccount({
    handle: { app: App.INSTAGRAM, value: `rq_${randomUUID().slice(0, 8)}` },
    appToken: "unused",
  });
  client.start();
  await waitFor(() => drained);
  return { client, store, texts, ids, failures, accountId };
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await sleep(50);
  }
}

describe("message request previews and reports through the SDK (Instagram-style)", () => {
  it("previews a pending item without accepting, emits it once after acceptance, reports and blocks another sender", async () => {
    const stack = await startStack();
    const delivery = stack.db as unknown as Kysely<Database>;
    const alice = await sdkUser(stack.gateway.url);
    const carol = await sdkUser(stack.gateway.url);
    const bob = await sdkUser(stack.gateway.url);
    await alice.client.sendMessage(bob.accountId, { text: "hello from a stranger" });
    await carol.client.sendMessage(bob.accountId, { text: "click this link" });
    await waitFor(async () => (await bob.client.listMessageRequests()).length === 2);

    const listed = await bob.client.listMessageRequests();
    for (const q of listed) {
      expect(q.envelopes).toHaveLength(1);
      expect(q.envelopes[0]?.serverFrankingTag.byteLength).toBe(32);
    }
    const previews = await bob.client.previewMessageRequests();
    const fromAlice = previews.find((p) => p.peerAccountId === alice.accountId);
    expect(fromAlice?.messages.map((m) => m.message.text)).toEqual(["hello from a stranger"]);
    expect(fromAlice?.failed).toEqual([]);
    expect(bob.texts).toEqual([]);

    await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId });
    await waitFor(() => bob.texts.length > 0);
    await sleep(300);
    expect(bob.texts).toEqual(["hello from a stranger"]);
    expect(bob.ids).toEqual([fromAlice?.messages[0]?.meta.id]);
    expect(bob.failures).toEqual([]);

    const r = await bob.client.reportMessageRequest({ peerAccountId: carol.accountId, reason: "phishing" });
    expect(r).toMatchObject({ unfranked: 0, undecryptable: 0, blocked: true });
    expect(r.reported).toHaveLength(1);
    const stored = await listReportsAgainst(delivery, carol.accountId);
    expect(stored.map((row) => row.id)).toEqual([r.reported[0]?.reportId]);
    expect(stored[0]?.reporter_account_id).toBe(bob.accountId);
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toContain("click this link");
    const held = await stack.db
      .selectFrom("ig_requests")
      .select("server_id")
      .where("owner_account_id", "=", bob.accountId)
      .where("peer_account_id", "=", carol.accountId)
      .execute();
    expect(held).toEqual([]);
    expect(await bob.client.listMessageRequests()).toEqual([]);

    // The blocked sender's next message never arrives; alice's, sent after it, does.
    expect((await carol.client.sendMessage(bob.accountId, { text: "still there?" })).kind).toBe("sent");
    await alice.client.sendMessage(bob.accountId, { text: "marker" });
    await waitFor(() => bob.texts.length > 1);
    await sleep(300);
    expect(bob.texts).toEqual(["hello from a stranger", "marker"]);
    expect(await bob.client.listMessageRequests()).toEqual([]);
  });

  it("answers 404 REQUEST_NOT_FOUND for the items of a thread that is not a pending request", async () => {
    const stack = await startStack();
    const bob = await signUp(stack.gateway.url);
    const r = await api(stack.gateway.url, "GET", "/v1/direct/pending/12345/items", { token: bob.token });
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ reason: "REQUEST_NOT_FOUND" });
  });
});
