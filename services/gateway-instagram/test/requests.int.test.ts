import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
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
