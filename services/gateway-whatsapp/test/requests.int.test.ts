import { Code } from "@switchboard/errors";
import { App, RequestsPolicy, whatsapp } from "@switchboard/proto";
import { createClient, createMemoryStore, createWhatsAppTransport, type ClientStore } from "@switchboard/sdk";
import { createDatabase, listReportsAgainst } from "@switchboard/storage";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  fetchCode,
  newPhone,
  openChat,
  registerPhone,
  startStack,
  text,
  textTo,
  userJid,
  waClient,
  type Stack,
  type WaDevice,
} from "./harness.js";

const { SendAckStatus } = whatsapp;

/** Registers a number with the app's age signal set (VerifyCodeRequest.minor). */
async function registerMinor(stack: Stack): Promise<WaDevice> {
  const phone = newPhone();
  const open = waClient(stack.target);
  await open.requestCode({ phoneNumber: phone });
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await open.verifyCode({
    phoneNumber: phone,
    code: await fetchCode(stack, phone),
    registrationId,
    minor: true,
  });
  return {
    phone,
    jid: r.jid,
    token: r.token,
    accountId: r.accountId,
    registrationId,
    client: waClient(stack.target, r.token),
  };
}

async function target(sender: WaDevice, recipient: { jid: string }) {
  const user = userJid(recipient.jid);
  const r = await sender.client.lookupUser({ jid: user });
  return { jid: user, devices: r.devices };
}

describe("WhatsApp message requests", () => {
  test("a stranger's message arrives marked as a request; a reply makes it a conversation", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const b = openChat(bob);
    await a.send(textTo(await target(alice, bob), "hi bob"));
    await b.until(() => b.messages().length === 1);
    expect(b.messages()[0]?.messageRequest).toBe(true);
    await b.send(textTo(await target(bob, alice), "hi alice"));
    await a.until(() => a.messages().length === 1);
    expect(a.messages()[0]?.messageRequest).toBe(false);
    await a.send(textTo(await target(alice, bob), "again"));
    await b.until(() => b.messages().length === 2);
    expect(b.messages()[1]?.messageRequest).toBe(false);
  });

  test("holding requests: list with previews, accept onto the chat stream, block silently", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const mallory = await registerPhone(stack);
    await bob.client.setRequestsPolicy({ hold: true });
    const a = openChat(alice);
    const b = openChat(bob);
    await b.until(() => b.drained() === 1);
    await a.send(textTo(await target(alice, bob), "one"));
    await a.send(textTo(await target(alice, bob), "two"));
    await a.until(() => a.acks().length === 2);
    expect(a.acks().every((x) => x.status === SendAckStatus.OK)).toBe(true);

    const list = await bob.client.listMessageRequests({});
    expect(list.requests).toHaveLength(1);
    expect(list.requests[0]?.from).toBe(userJid(alice.jid));
    expect(list.requests[0]?.messages.map((m) => text(m.ciphertext))).toEqual(["one", "two"]);
    expect(b.messages()).toHaveLength(0);

    expect((await bob.client.acceptMessageRequest({ jid: userJid(alice.jid) })).released).toBe(2);
    await b.until(() => b.messages().length === 2);
    expect(b.messages().map((m) => text(m.ciphertext))).toEqual(["one", "two"]);

    const m = openChat(mallory);
    await m.send(textTo(await target(mallory, bob), "buy now"));
    await m.until(() => m.acks().length === 1);
    await bob.client.blockUser({ jid: userJid(mallory.jid) });
    expect((await bob.client.listMessageRequests({})).requests).toHaveLength(0);
    await m.send(textTo(await target(mallory, bob), "buy now!!"));
    await m.until(() => m.acks().length === 2);
    expect(m.acks()[1]?.status).toBe(SendAckStatus.OK);
    expect((await bob.client.listMessageRequests({})).requests).toHaveLength(0);

    await expect(bob.client.blockUser({ jid: "15550009999@s.whatsapp.net" })).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "USER_NOT_FOUND",
    });
  });

  test("a minor receives nothing from an adult stranger; the adult sees OK, as for anyone", async () => {
    const stack = await startStack();
    const adult = await registerPhone(stack);
    const minor = await registerMinor(stack);
    const friend = await registerPhone(stack);
    const a = openChat(adult);
    const k = openChat(minor);
    await k.until(() => k.drained() === 1);
    await a.send(textTo(await target(adult, minor), "hey there"));
    await a.until(() => a.acks().length === 1);
    expect(a.acks()[0]).toMatchObject({ status: SendAckStatus.OK });
    expect(a.acks()[0]?.serverId).not.toBe("");

    // The minor messages a friend first: the friend's reply reaches the minor.
    await k.send(textTo(await target(minor, friend), "hi friend"));
    const f = openChat(friend);
    await f.until(() => f.messages().length === 1);
    await f.send(textTo(await target(friend, minor), "hi kid"));
    await k.until(() => k.messages().length === 1);
    expect(text(k.messages()[0]?.ciphertext ?? new Uint8Array())).toBe("hi kid");
    expect((await minor.client.listMessageRequests({})).requests).toHaveLength(0);

    // Group invitations by the adult stranger do not add the minor.
    const g = await adult.client.createGroup({ participants: [userJid(minor.jid), userJid(friend.jid)] });
    const members = await adult.client.updateGroup({ groupJid: g.groupJid });
    expect(members.participants.sort()).toEqual([userJid(adult.jid), userJid(friend.jid)].sort());
    expect(k.messages()).toHaveLength(1);
  });
});

describe("message requests through the SDK on the WhatsApp-style app", () => {
  test("lists a held request with its envelope, accepts it, and decrypts it", async () => {
    const stack = await startStack();
    const open = async (minor = false) => {
      const phone = newPhone();
      const transport = createWhatsAppTransport({
        target: stack.target,
        verificationCode: (p) => fetchCode(stack, p),
      });
      const client = await createClient({ transport, store: createMemoryStore() });
      const texts: string[] = [];
      client.on("message", (e) => void texts.push(e.message.text));
      onTestFinished(async () => {
        await client.close();
        await transport.close();
      });
      const r = await client.registerAccount({
        handle: { app: App.WHATSAPP, value: phone },
        appToken: "",
        minor,
      });
      return { client, texts, accountId: r.accountId, phone };
    };
    const alice = await open();
    const bob = await open();
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    await alice.client.sendMessage(bob.accountId, { text: "hello from a stranger" });
    const requests = await bob.client.listMessageRequests();
    expect(requests).toHaveLength(1);
    expect(requests[0]?.peerAccountId).toBe(alice.accountId);
    expect(requests[0]?.envelopes[0]?.messageRequest).toBe(true);
    await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId });
    for (let i = 0; i < 200 && bob.texts.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(bob.texts).toEqual(["hello from a stranger"]);
  });
});

/** An SDK client registered on the WhatsApp-style gateway, recording messages and decryption failures. */
async function openSdkUser(stack: Stack) {
  const phone = newPhone();
  const transport = createWhatsAppTransport({
    target: stack.target,
    verificationCode: (p) => fetchCode(stack, p),
  });
  const store: ClientStore = createMemoryStore();
  const client = await createClient({ transport, store });
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
  const r = await client.registerAccount({ handle: { app: App.WHATSAPP, value: phone }, appToken: "" });
  return { client, store, texts, ids, failures, accountId: r.accountId, phone };
}

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("message request previews and reports through the SDK on the WhatsApp-style app", () => {
  test("previews a held request, emits it exactly once after acceptance, and reports and blocks another", async () => {
    const stack = await startStack();
    const db = createDatabase({ url: stack.databaseUrl });
    onTestFinished(() => db.destroy());
    const alice = await openSdkUser(stack);
    const carol = await openSdkUser(stack);
    const bob = await openSdkUser(stack);
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    for (const sender of [alice, carol])
      await sender.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    await alice.client.sendMessage(bob.accountId, { text: "hello from a stranger" });
    await carol.client.sendMessage(bob.accountId, { text: "click this link" });

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
    const stored = await listReportsAgainst(db, carol.accountId);
    expect(stored.map((row) => row.id)).toEqual([r.reported[0]?.reportId]);
    expect(stored[0]?.reporter_account_id).toBe(bob.accountId);
    expect(stored[0]?.reason).toBe("phishing");
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toContain("click this link");
    const held = await db
      .selectFrom("queued_messages")
      .select("message_id")
      .where("account_id", "=", bob.accountId)
      .where("source_account_id", "=", carol.accountId)
      .execute();
    expect(held).toEqual([]);
    expect(await bob.client.listMessageRequests()).toEqual([]);
    expect(await bob.store.state.listHeld()).toEqual([]);

    // The blocked sender's next message never arrives; alice's, sent after it, does.
    expect((await carol.client.sendMessage(bob.accountId, { text: "still there?" })).kind).toBe("sent");
    await alice.client.sendMessage(bob.accountId, { text: "marker" });
    await waitFor(() => bob.texts.length > 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(bob.texts).toEqual(["hello from a stranger", "marker"]);
    expect(await bob.client.listMessageRequests()).toEqual([]);
  });
});
