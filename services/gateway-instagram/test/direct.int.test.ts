import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { api, b64, openEvents, signUp, sleep, startStack, unb64, type IgUser } from "./harness.js";

/** Opens the one-to-one thread of `from` with `to` (which accepts `to`). */
async function openThread(base: string, from: IgUser, to: IgUser | string): Promise<string> {
  const r = await api<{ thread_id: string }>(base, "POST", "/v1/direct/threads", {
    token: from.token,
    body: { recipients: [typeof to === "string" ? to : to.username] },
  });
  if (r.status !== 200) throw new Error(`thread failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.thread_id;
}

/** Sends a text-like opaque item to a one-to-one thread with one ciphertext per listed device. */
function sendItem(
  base: string,
  from: IgUser,
  threadId: string,
  text: string,
  devices: { device_id: number; registration_id: number }[],
  extra: Record<string, unknown> = {},
) {
  return api<{ server_id: string; duplicate: boolean; reason?: string }>(
    base,
    "POST",
    `/v1/direct/threads/${threadId}/items`,
    {
      token: from.token,
      body: {
        client_context: randomUUID(),
        ciphertexts: devices.map((d) => ({ ...d, type: "ciphertext", body: b64(text) })),
        ...extra,
      },
    },
  );
}

const one = (u: IgUser) => [{ device_id: 1, registration_id: u.registrationId }];

describe("direct threads over SSE", () => {
  it("streams items to accepted peers, takes acks over HTTP and returns delivery receipts", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    // Bob opens the thread first, which accepts Ada: her first message goes straight to him.
    const threadId = await openThread(gateway.url, bob, ada);
    expect(await openThread(gateway.url, ada, bob)).toBe(threadId);

    const bobEvents = await openEvents(gateway.url, bob.token);
    const adaEvents = await openEvents(gateway.url, ada.token, { viaQuery: true });
    await bobEvents.until((e) => e.some((x) => x.event === "queue_empty"));

    const clientContext = randomUUID();
    const sent = await sendItem(gateway.url, ada, threadId, "hello bob", one(bob), {
      client_context: clientContext,
      client_timestamp_ms: 1_700_000_000_000,
      forwarded: true,
    });
    expect(sent.status).toBe(200);
    const retry = await sendItem(gateway.url, ada, threadId, "hello bob", one(bob), {
      client_context: clientContext,
    });
    expect(retry.body).toMatchObject({ server_id: sent.body.server_id, duplicate: true });

    await bobEvents.until((e) => e.some((x) => x.event === "item"));
    const item = bobEvents.items()[0];
    expect(item?.id).toBe(sent.body.server_id);
    expect(item?.data).toMatchObject({
      server_id: sent.body.server_id,
      thread_id: threadId,
      thread_type: "private",
      client_context: clientContext,
      item_type: "message",
      kind: "ciphertext",
      sender: { account_id: ada.accountId, device_id: 1, app: "instagram", ref: ada.username },
      recipient: { account_id: bob.accountId, device_id: 1 },
      forwarded: true,
      urgent: true,
      client_timestamp_ms: 1_700_000_000_000,
      seq: 1,
    });
    expect(unb64(item?.data.body)).toBe("hello bob");

    const ack = await api(gateway.url, "POST", "/v1/direct/ack", {
      token: bob.token,
      body: { ids: [sent.body.server_id] },
    });
    expect(ack.status).toBe(204);
    await adaEvents.until((e) => e.some((x) => x.event === "receipt"));
    const receipt = adaEvents.events.find((e) => e.event === "receipt");
    expect(receipt?.data).toMatchObject({
      kind: "delivery_receipt",
      client_context: clientContext,
      thread_id: threadId,
      sender: { account_id: bob.accountId, device_id: 1, ref: bob.username },
    });

    // Typing is ephemeral: delivered to the connected device, never stored.
    await sendItem(gateway.url, ada, threadId, "…", one(bob), { item_type: "typing" });
    await bobEvents.until((e) => e.some((x) => x.event === "item" && x.data.item_type === "typing"));

    const inbox = await api<{ threads: { thread_id: string; peer?: { ref?: string } }[] }>(
      gateway.url,
      "GET",
      "/v1/direct/inbox",
      { token: bob.token },
    );
    expect(inbox.body.threads).toHaveLength(1);
    expect(inbox.body.threads[0]).toMatchObject({ thread_id: threadId, peer: { ref: ada.username } });
  });

  it("returns no delivery receipt for an item sent with server_receipt: false", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const threadId = await openThread(gateway.url, bob, ada);
    await openThread(gateway.url, ada, bob);
    const bobEvents = await openEvents(gateway.url, bob.token);
    const adaEvents = await openEvents(gateway.url, ada.token);
    await bobEvents.until((e) => e.some((x) => x.event === "queue_empty"));
    await adaEvents.until((e) => e.some((x) => x.event === "queue_empty"));

    const bad = await sendItem(gateway.url, ada, threadId, "x", one(bob), { server_receipt: "no" });
    expect([bad.status, bad.body.reason]).toEqual([400, "INVALID_ARGUMENT"]);

    const [quietContext, loudContext] = [randomUUID(), randomUUID()];
    const quiet = await sendItem(gateway.url, ada, threadId, "no receipt, thanks", one(bob), {
      client_context: quietContext,
      server_receipt: false,
    });
    const loud = await sendItem(gateway.url, ada, threadId, "receipt, please", one(bob), {
      client_context: loudContext,
    });
    expect([quiet.status, loud.status]).toEqual([200, 200]);
    await bobEvents.until((e) => e.filter((x) => x.event === "item").length === 2);
    expect(bobEvents.items().map((x) => x.id)).toEqual([quiet.body.server_id, loud.body.server_id]);

    // Acked one after the other: by the time the second one's receipt arrives, the first ack is done.
    for (const s of [quiet, loud]) {
      const ack = await api(gateway.url, "POST", "/v1/direct/ack", {
        token: bob.token,
        body: { ids: [s.body.server_id] },
      });
      expect(ack.status).toBe(204);
    }
    await adaEvents.until((e) =>
      e.some((x) => x.event === "receipt" && x.data.client_context === loudContext),
    );
    await sleep(300);
    const receipts = adaEvents.events.filter((e) => e.event === "receipt");
    expect(receipts.map((r) => r.data.client_context)).toEqual([loudContext]);
    expect(receipts[0]?.data).toMatchObject({
      kind: "delivery_receipt",
      thread_id: threadId,
      sender: { account_id: bob.accountId, device_id: 1 },
    });
  });

  it("answers a stale device list with 409 DEVICES_CHANGED and the device differences", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const added = await api<{ device: { device_id: number } }>(gateway.url, "POST", "/v1/devices", {
      token: bob.token,
      body: { registration_id: 77 },
    });
    expect(added.status).toBe(201);
    const threadId = await openThread(gateway.url, ada, bob);

    const missing = await sendItem(gateway.url, ada, threadId, "x", [
      ...one(bob),
      { device_id: 3, registration_id: 1 },
    ]);
    expect(missing.status).toBe(409);
    expect(missing.body).toMatchObject({
      reason: "DEVICES_CHANGED",
      account_id: bob.accountId,
      missing_devices: [2],
      extra_devices: [3],
      stale_devices: [],
    });
    const stale = await sendItem(gateway.url, ada, threadId, "x", [
      { device_id: 1, registration_id: bob.registrationId === 1 ? 2 : 1 },
      { device_id: 2, registration_id: 77 },
    ]);
    expect(stale.body).toMatchObject({ reason: "DEVICES_CHANGED", stale_devices: [1], missing_devices: [] });
    const wrongShape = await api(gateway.url, "POST", `/v1/direct/threads/${threadId}/items`, {
      token: ada.token,
      body: { client_context: "c1", body: b64("sender key") },
    });
    expect([wrongShape.status, wrongShape.body.reason]).toEqual([400, "CIPHERTEXTS_REQUIRED"]);
    const unknown = await sendItem(gateway.url, bob, "12345", "x", one(ada));
    expect([unknown.status, unknown.body.reason]).toEqual([404, "THREAD_NOT_FOUND"]);
  });

  it("keeps event streams open across a delivery-service restart and re-drains unacknowledged items", async () => {
    const stack = await startStack();
    const { gateway } = stack;
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const threadId = await openThread(gateway.url, bob, ada);
    await openThread(gateway.url, ada, bob);
    const bobEvents = await openEvents(gateway.url, bob.token);
    await bobEvents.until((e) => e.some((x) => x.event === "queue_empty"));
    const before = await sendItem(gateway.url, ada, threadId, "before the restart", one(bob));
    expect(before.status).toBe(200);
    await bobEvents.until((e) => e.some((x) => x.id === before.body.server_id));

    await stack.restartDelivery();
    const clientContext = randomUUID();
    const send = () =>
      sendItem(gateway.url, ada, threadId, "after", one(bob), { client_context: clientContext });
    let after = await send();
    for (let i = 0; i < 100 && after.status !== 200; i++) {
      // UNAVAILABLE while the link reconnects: retrying with the same client_context is safe.
      expect([after.status, after.body.reason]).toEqual([503, "LINK_RECONNECTING"]);
      await sleep(100);
      after = await send();
    }
    expect(after.status).toBe(200);
    await bobEvents.until((e) => e.some((x) => x.id === after.body.server_id), 15_000);
    // The unacknowledged item from before the restart was delivered again (clients de-duplicate).
    expect(bobEvents.items().filter((x) => x.id === before.body.server_id).length).toBeGreaterThanOrEqual(2);
    expect(bobEvents.ended).toBe(false);
  });

  it("displaces an older event stream of the same device", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const first = await openEvents(gateway.url, ada.token);
    await first.until((e) => e.some((x) => x.event === "queue_empty"));
    const second = await openEvents(gateway.url, ada.token);
    await first.until((e) => e.some((x) => x.event === "displaced"));
    await second.until((e) => e.some((x) => x.event === "queue_empty"));
    await sleep(100);
    expect(first.ended).toBe(true);
    expect(second.ended).toBe(false);
    expect(gateway.app.hub.connections).toBe(1);
  });

  it("creates group threads and fans one sender-key body out to every member device", async () => {
    const { gateway } = await startStack();
    const [ada, bob, cy] = [await signUp(gateway.url), await signUp(gateway.url), await signUp(gateway.url)];
    const created = await api<{
      thread_id: string;
      thread_type: string;
      users: { account_id: string }[];
      revision: number;
    }>(gateway.url, "POST", "/v1/direct/threads", {
      token: ada.token,
      body: { recipients: [bob.username, cy.accountId] },
    });
    expect(created.status).toBe(200);
    expect(created.body.thread_type).toBe("group");
    expect(created.body.users.map((u) => u.account_id).sort()).toEqual(
      [ada.accountId, bob.accountId, cy.accountId].sort(),
    );
    const groupId = created.body.thread_id;

    const bobEvents = await openEvents(gateway.url, bob.token);
    const cyEvents = await openEvents(gateway.url, cy.token);
    const wrong = await api(gateway.url, "POST", `/v1/direct/threads/${groupId}/items`, {
      token: ada.token,
      body: {
        client_context: randomUUID(),
        body: b64("skm"),
        expected_recipients: [
          { account_id: bob.accountId, devices: [{ device_id: 1, registration_id: bob.registrationId }] },
        ],
      },
    });
    expect(wrong.status).toBe(409);
    expect(wrong.body).toMatchObject({
      reason: "DEVICES_CHANGED",
      accounts: [{ account_id: cy.accountId, missing_devices: [1], extra_devices: [], stale_devices: [] }],
    });
    // Bob has accepted Ada (he opened a thread with her); Cy has not, so Ada's group item waits
    // in Cy's requests until Cy accepts her.
    await openThread(gateway.url, bob, ada);
    const sent = await api(gateway.url, "POST", `/v1/direct/threads/${groupId}/items`, {
      token: ada.token,
      body: { client_context: randomUUID(), body: b64("to the group") },
    });
    expect(sent.status).toBe(200);
    await bobEvents.until((e) => e.some((x) => x.event === "item"));
    let pending = await api<{ threads: { thread_id: string }[] }>(gateway.url, "GET", "/v1/direct/pending", {
      token: cy.token,
    });
    for (let i = 0; i < 100 && pending.body.threads.length === 0; i++) {
      await sleep(50);
      pending = await api(gateway.url, "GET", "/v1/direct/pending", { token: cy.token });
    }
    expect(cyEvents.items()).toEqual([]);
    const adaThread = pending.body.threads[0]?.thread_id ?? "";
    await api(gateway.url, "POST", `/v1/direct/pending/${adaThread}/accept`, { token: cy.token });
    for (const events of [bobEvents, cyEvents]) {
      await events.until((e) => e.some((x) => x.event === "item"));
      expect(events.items()[0]?.data).toMatchObject({
        thread_id: groupId,
        thread_type: "group",
        kind: "sender_key",
      });
      expect(unb64(events.items()[0]?.data.body)).toBe("to the group");
    }

    const outsider = await signUp(gateway.url);
    const denied = await api(gateway.url, "POST", `/v1/direct/threads/${groupId}/items`, {
      token: outsider.token,
      body: { client_context: randomUUID(), body: b64("let me in") },
    });
    expect([denied.status, denied.body.reason]).toEqual([403, "NOT_A_MEMBER"]);
    const added = await api<{ users: unknown[] }>(
      gateway.url,
      "POST",
      `/v1/direct/threads/${groupId}/add_users`,
      {
        token: bob.token,
        body: { recipients: [outsider.username] },
      },
    );
    expect(added.body.users).toHaveLength(4);
    const removed = await api<{ users: unknown[] }>(
      gateway.url,
      "POST",
      `/v1/direct/threads/${groupId}/remove_users`,
      {
        token: ada.token,
        body: { recipients: [outsider.username] },
      },
    );
    expect(removed.body.users).toHaveLength(3);
    const inboxBefore = await api<{ threads: { thread_id: string }[] }>(
      gateway.url,
      "GET",
      "/v1/direct/inbox",
      {
        token: cy.token,
      },
    );
    expect(inboxBefore.body.threads.map((t) => t.thread_id).sort()).toEqual([adaThread, groupId].sort());
    const left = await api<{ users: unknown[] }>(
      gateway.url,
      "POST",
      `/v1/direct/threads/${groupId}/remove_users`,
      {
        token: cy.token,
        body: { recipients: [cy.username] },
      },
    );
    expect([left.status, left.body.users]).toEqual([200, []]);
    const inboxAfter = await api<{ threads: { thread_id: string }[] }>(
      gateway.url,
      "GET",
      "/v1/direct/inbox",
      {
        token: cy.token,
      },
    );
    expect(inboxAfter.body.threads.map((t) => t.thread_id)).toEqual([adaThread]);
  });
});

describe("message requests", () => {
  it("holds a stranger's first messages, lists them, and releases them to each device on accept until acked", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const laptop = await api<{ access_token: string }>(gateway.url, "POST", "/v1/devices", {
      token: bob.token,
      body: { registration_id: 55 },
    });
    const bobDevices = [...one(bob), { device_id: 2, registration_id: 55 }];
    const bob1 = await openEvents(gateway.url, bob.token);
    let bob2 = await openEvents(gateway.url, laptop.body.access_token);
    await bob1.until((e) => e.some((x) => x.event === "queue_empty"));

    const threadId = await openThread(gateway.url, ada, bob);
    const m1 = await sendItem(gateway.url, ada, threadId, "hi, it's ada", bobDevices);
    const m2 = await sendItem(gateway.url, ada, threadId, "are you there?", bobDevices);
    await sendItem(gateway.url, ada, threadId, "typing…", bobDevices, { item_type: "typing" });
    expect([m1.status, m2.status]).toEqual([200, 200]);

    // Both devices drained their copies into the requests folder; nothing was streamed.
    let pending = await api<{
      threads: { thread_id: string; sender: { ref?: string }; item_count: number }[];
    }>(gateway.url, "GET", "/v1/direct/pending", { token: bob.token });
    for (let i = 0; i < 100 && pending.body.threads[0]?.item_count !== 2; i++) {
      await sleep(50);
      pending = await api(gateway.url, "GET", "/v1/direct/pending", { token: bob.token });
    }
    expect(pending.body.threads).toHaveLength(1);
    expect(pending.body.threads[0]).toMatchObject({
      thread_id: threadId,
      sender: { ref: ada.username },
      item_count: 2,
    });
    await sleep(200);
    expect(bob1.items()).toEqual([]);
    expect(bob2.items()).toEqual([]);
    expect(
      (await api<{ threads: unknown[] }>(gateway.url, "GET", "/v1/direct/inbox", { token: bob.token })).body
        .threads,
    ).toEqual([]);
    const peek = await api<{ pending: boolean }>(gateway.url, "GET", `/v1/direct/threads/${threadId}`, {
      token: bob.token,
    });
    expect(peek.body.pending).toBe(true);

    const accepted = await api<{ thread_id: string; pending: boolean }>(
      gateway.url,
      "POST",
      `/v1/direct/pending/${threadId}/accept`,
      { token: bob.token },
    );
    expect(accepted.body).toMatchObject({ thread_id: threadId, pending: false });
    const ids = [m1.body.server_id, m2.body.server_id];
    for (const s of [bob1, bob2]) {
      await s.until((e) => e.filter((x) => x.event === "item").length === 2);
      expect(s.items().map((x) => x.id)).toEqual(ids);
      expect(s.items().map((x) => unb64(x.data.body))).toEqual(["hi, it's ada", "are you there?"]);
    }
    expect(
      (await api<{ threads: unknown[] }>(gateway.url, "GET", "/v1/direct/pending", { token: bob.token })).body
        .threads,
    ).toEqual([]);

    // Device 1 acks; device 2 does not, so it gets the released items again on its next connection.
    await api(gateway.url, "POST", "/v1/direct/ack", { token: bob.token, body: { ids } });
    bob2.close();
    bob2 = await openEvents(gateway.url, laptop.body.access_token);
    await bob2.until((e) => e.filter((x) => x.event === "item").length === 2);
    await api(gateway.url, "POST", "/v1/direct/ack", { token: laptop.body.access_token, body: { ids } });
    bob2.close();
    const again = await openEvents(gateway.url, laptop.body.access_token);
    await again.until((e) => e.some((x) => x.event === "queue_empty"));
    await sleep(100);
    expect(again.items()).toEqual([]);

    // Accepted: later messages are live.
    const m3 = await sendItem(gateway.url, ada, threadId, "great", bobDevices);
    await bob1.until((e) => e.some((x) => x.id === m3.body.server_id));
    const inbox = await api<{ threads: { thread_id: string }[] }>(gateway.url, "GET", "/v1/direct/inbox", {
      token: bob.token,
    });
    expect(inbox.body.threads.map((t) => t.thread_id)).toEqual([threadId]);
  });

  it("deletes a declined request; a later message starts a new one", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const bobEvents = await openEvents(gateway.url, bob.token);
    const threadId = await openThread(gateway.url, ada, bob);
    await sendItem(gateway.url, ada, threadId, "buy my stuff", one(bob));
    const waitPending = async (count: number) => {
      for (let i = 0; i < 100; i++) {
        const r = await api<{ threads: { item_count: number }[] }>(gateway.url, "GET", "/v1/direct/pending", {
          token: bob.token,
        });
        if ((r.body.threads[0]?.item_count ?? 0) === count) return;
        await sleep(50);
      }
      throw new Error("request not listed");
    };
    await waitPending(1);
    const declined = await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/decline`, {
      token: bob.token,
    });
    expect(declined.body).toEqual({ thread_id: threadId, deleted_items: 1 });
    expect(
      (await api<{ threads: unknown[] }>(gateway.url, "GET", "/v1/direct/pending", { token: bob.token })).body
        .threads,
    ).toEqual([]);
    const twice = await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/decline`, {
      token: bob.token,
    });
    expect([twice.status, twice.body.reason]).toEqual([404, "REQUEST_NOT_FOUND"]);

    await sendItem(gateway.url, ada, threadId, "please?", one(bob));
    await waitPending(1);
    expect(bobEvents.items()).toEqual([]);

    // Replying accepts: the new request is released.
    const reply = await sendItem(gateway.url, bob, threadId, "no thanks", one(ada));
    expect(reply.status).toBe(200);
    await bobEvents.until((e) => e.filter((x) => x.event === "item").length === 1);
    expect(unb64(bobEvents.items()[0]?.data.body)).toBe("please?");
  });

  it("keeps held requests across a gateway restart and releases them through another instance", async () => {
    const stack = await startStack();
    const gw1 = stack.gateway;
    const gw2 = await stack.startGateway();
    const ada = await signUp(gw1.url);
    const bob = await signUp(gw1.url);
    const onGw1 = await openEvents(gw1.url, bob.token);
    await onGw1.until((e) => e.some((x) => x.event === "queue_empty"));
    const threadId = await openThread(gw1.url, ada, bob);
    const sent = await sendItem(gw1.url, ada, threadId, "first contact", one(bob));
    for (let i = 0; i < 100; i++) {
      const r = await api<{ threads: unknown[] }>(gw2.url, "GET", "/v1/direct/pending", { token: bob.token });
      if (r.body.threads.length === 1) break;
      await sleep(50);
    }
    await gw1.close();

    // Bob reconnects to gw2 and accepts there, then again with the stream on gw2 and the accept on a third.
    const onGw2 = await openEvents(gw2.url, bob.token);
    await onGw2.until((e) => e.some((x) => x.event === "queue_empty"));
    expect(onGw2.items()).toEqual([]);
    const gw3 = await stack.startGateway();
    const accepted = await api(gw3.url, "POST", `/v1/direct/pending/${threadId}/accept`, {
      token: bob.token,
    });
    expect(accepted.status).toBe(200);
    await onGw2.until((e) => e.some((x) => x.id === sent.body.server_id));
    expect(unb64(onGw2.items()[0]?.data.body)).toBe("first contact");
  });
});
