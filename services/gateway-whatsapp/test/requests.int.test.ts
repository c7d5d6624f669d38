import { Code } from "@switchboard/errors";
import { App, RequestsPolicy, whatsapp } from "@switchboard/proto";
import { createClient, createMemoryStore, createWhatsAppTransport } from "@switchboard/sdk";
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
