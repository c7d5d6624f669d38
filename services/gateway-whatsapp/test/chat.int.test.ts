import { randomBytes } from "node:crypto";
import { Code } from "@switchboard/errors";
import { App, EnvelopeType, whatsapp } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import {
  linkCompanion,
  messengerApp,
  openChat,
  registerPhone,
  sleep,
  startStack,
  text,
  textTo,
  userJid,
  waClient,
  type Stack,
  type WaDevice,
} from "./harness.js";

const { SendAckStatus, MessageKind } = whatsapp;

/** The recipient as a sender addresses it: user JID and current device JIDs. */
async function target(sender: WaDevice, recipient: { jid: string }) {
  const user = userJid(recipient.jid);
  const r = await sender.client.lookupUser({ jid: user });
  return { jid: user, devices: r.devices };
}

/** A Messenger-style user registered directly at the delivery service (as its gateway would). */
async function messengerUser(stack: Stack) {
  const ms = messengerApp(stack);
  const id = String(100000 + Math.floor(Math.random() * 1e9));
  const r = await ms.directory.registerAccount({
    handle: { app: App.MESSENGER, value: id },
    registrationId: 321,
    password: randomBytes(18).toString("base64url"),
  });
  return { id, accountId: r.account?.id ?? "", jid: `${id}@messenger`, ms };
}

describe("Chat", () => {
  test("delivers a message, its server receipt and the acks in between", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const b = openChat(bob);
    await a.until(() => a.drained() === 1);
    await b.until(() => b.drained() === 1);

    await a.send({
      ...textTo(await target(alice, bob), "hello bob", "m-1"),
      urgent: true,
      reportTag: new Uint8Array([9]),
    });
    await a.until(() => a.acks().length === 1);
    await b.until(() => b.messages().length === 1);
    await a.until(() => a.receipts().length === 1);

    const ack = a.acks()[0];
    const msg = b.messages()[0];
    expect(ack).toMatchObject({ id: "m-1", status: SendAckStatus.OK });
    expect(msg).toMatchObject({
      serverId: ack?.serverId,
      id: "m-1",
      from: alice.jid,
      group: "",
      kind: MessageKind.MSG,
      urgent: true,
      senderRegistrationId: alice.registrationId,
      sequence: 1n,
      serverT: ack?.serverT,
    });
    expect(text(msg?.ciphertext ?? new Uint8Array())).toBe("hello bob");
    expect([...(msg?.reportTag ?? [])]).toEqual([9]);
    expect(a.receipts()[0]).toMatchObject({ id: "m-1", from: bob.jid });
  });

  test("sends no server receipt for a message sent with no_server_receipt", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const b = openChat(bob);
    await a.until(() => a.drained() === 1);
    await b.until(() => b.drained() === 1);
    const to = await target(alice, bob);

    // The flagged message goes (and is acknowledged by Bob) first, so a receipt wrongly produced
    // for it would reach Alice before the normal message's.
    await a.send({ ...textTo(to, "no receipt, please", "m-quiet"), noServerReceipt: true });
    await a.until(() => a.acks().length === 1);
    await a.send(textTo(to, "receipt, please", "m-normal"));
    await a.until(() => a.acks().length === 2);
    await b.until(() => b.messages().length === 2);
    await a.until(() => a.receipts().some((r) => r.id === "m-normal"));
    await sleep(500);

    expect(a.acks().map((ack) => ack.status)).toEqual([SendAckStatus.OK, SendAckStatus.OK]);
    expect(b.messages().map((m) => m.id)).toEqual(["m-quiet", "m-normal"]);
    expect(a.receipts()).toHaveLength(1);
    expect(a.receipts()[0]).toMatchObject({ id: "m-normal", from: bob.jid });
  });

  test("reports device-list changes with device JIDs", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const bob2 = await linkCompanion(stack, bob);
    const a = openChat(alice);

    const bobUser = userJid(bob.jid);
    await a.send(
      textTo({ jid: bobUser, devices: [{ jid: bob.jid, registrationId: bob.registrationId }] }, "x", "m-1"),
    );
    await a.send(
      textTo(
        {
          jid: bobUser,
          devices: [
            { jid: bob.jid, registrationId: bob.registrationId + 1 },
            { jid: bob2.jid, registrationId: bob2.registrationId },
          ],
        },
        "y",
        "m-2",
      ),
    );
    await a.send(textTo({ jid: "15550009999@s.whatsapp.net", devices: [] }, "z", "m-3"));
    await a.until(() => a.acks().length === 3);

    const byId = new Map(a.acks().map((x) => [x.id, x]));
    expect(byId.get("m-1")).toMatchObject({
      status: SendAckStatus.DEVICES_CHANGED,
      missing: [bob2.jid],
      extra: [],
    });
    expect(byId.get("m-2")).toMatchObject({ status: SendAckStatus.DEVICES_CHANGED, stale: [bob.jid] });
    expect(byId.get("m-3")).toMatchObject({ status: SendAckStatus.NOT_FOUND });
  });

  test("answers malformed frames with ChatError and keeps the stream open", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);

    await a.send({ id: "bad-jid", to: "nobody@example.com" });
    await a.send({ id: "too-big", ...textTo(await target(alice, bob), "x".repeat(300 * 1024)) });
    await a.stream.send({ frame: { case: undefined } });
    await a.ack(["not-a-uuid"]);
    await a.until(() => a.errors().length === 4);
    await a.send(textTo(await target(alice, bob), "still works", "ok-1"));
    await a.until(() => a.acks().length === 1);

    const errors = a.errors();
    expect(errors.find((e) => e.id === "bad-jid")).toMatchObject({
      code: Code.InvalidArgument,
      reason: "INVALID_JID",
    });
    expect(errors.find((e) => e.reason === "PAYLOAD_TOO_LARGE")).toMatchObject({
      code: Code.InvalidArgument,
    });
    expect(errors.map((e) => e.reason)).toEqual(expect.arrayContaining(["EMPTY_FRAME", "INVALID_ID"]));
    expect(a.acks()[0]).toMatchObject({ id: "ok-1", status: SendAckStatus.OK });
    expect(a.done).toBe(false);
  });

  test("rejects a stream without a valid token", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const c = openChat({ ...alice, client: waClient(stack.target, "bogus") });
    await c.until(() => c.done);
    expect(c.error).toMatchObject({ code: Code.Unauthenticated, reason: "INVALID_TOKEN" });
  });

  test("delivers the backlog in order to a device that was offline, then QueueDrained", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const to = await target(alice, bob);
    for (let i = 0; i < 20; i++) await a.send(textTo(to, `n${i}`, `m-${i}`));
    await a.until(() => a.acks().length === 20);

    const b = openChat(bob);
    await b.until(() => b.drained() === 1);

    expect(b.messages().map((m) => text(m.ciphertext))).toEqual(
      Array.from({ length: 20 }, (_, i) => `n${i}`),
    );
    expect(b.messages().map((m) => m.sequence)).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(i + 1)));
    const drainedAt = b.frames.findIndex((f) => f.frame.case === "queueDrained");
    expect(drainedAt).toBe(20);
  });

  test("redelivers unacknowledged messages on the next stream only", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    await a.send(textTo(await target(alice, bob), "once", "m-1"));
    await a.until(() => a.acks().length === 1);

    const first = openChat(bob, { autoAck: false });
    await first.until(() => first.drained() === 1);
    first.stream.cancel();
    await first.finished;
    const second = openChat(bob);
    await second.until(() => second.drained() === 1);
    await a.until(() => a.receipts().length === 1);
    const third = openChat(bob);
    await third.until(() => third.drained() === 1);

    expect(first.messages()).toHaveLength(1);
    expect(second.messages().map((m) => m.serverId)).toEqual(first.messages().map((m) => m.serverId));
    expect(third.messages()).toHaveLength(0);
  });

  test("displaces an older stream of the same device with ABORTED DISPLACED", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const old = openChat(bob);
    await old.until(() => old.drained() === 1);

    const fresh = openChat(bob);
    await fresh.until(() => fresh.drained() === 1);
    await old.until(() => old.done);
    const a = openChat(alice);
    await a.send(textTo(await target(alice, bob), "to the new stream", "m-1"));
    await fresh.until(() => fresh.messages().length === 1);

    expect(old.error).toMatchObject({ code: Code.Aborted, reason: "DISPLACED" });
    expect(old.messages()).toHaveLength(0);
    expect(stack.gateway.connections).toBe(2);
  });

  test("delivers ephemeral typing to connected devices only", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const to = await target(alice, bob);
    await a.send({ ...textTo(to, "typing-offline", "t-0"), ephemeral: true });
    await a.until(() => a.acks().length === 1);

    const b = openChat(bob);
    await b.until(() => b.drained() === 1);
    await a.send({ ...textTo(to, "typing", "t-1"), ephemeral: true });
    await b.until(() => b.messages().length === 1);

    expect(b.messages()[0]).toMatchObject({ id: "t-1", ephemeral: true });
  });

  test("renders users of other apps as JIDs in both directions", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const mark = await messengerUser(stack);
    const a = openChat(alice);
    await a.until(() => a.drained() === 1);

    const sent = await mark.ms.messages.sendMessage({
      sender: { accountId: mark.accountId, deviceId: 1 },
      destinationAccountId: alice.accountId,
      messages: [
        {
          deviceId: 1,
          registrationId: alice.registrationId,
          type: EnvelopeType.PREKEY_MESSAGE,
          content: Buffer.from("hi"),
        },
      ],
      clientMessageId: "ms-1",
      clientTimestampMs: 1234n,
    });
    await a.until(() => a.messages().length === 1);
    const reply = await target(alice, { jid: mark.jid });
    await a.send(textTo(reply, "hello mark", "wa-1"));
    await a.until(() => a.acks().length === 1);

    expect(sent.result.case).toBe("sent");
    expect(a.messages()[0]).toMatchObject({
      id: "ms-1",
      from: `${mark.id}:1@messenger`,
      kind: MessageKind.PKMSG,
      t: 1234n,
      senderRegistrationId: 321,
    });
    expect(reply.devices).toEqual([
      expect.objectContaining({ jid: `${mark.id}:1@messenger`, registrationId: 321 }),
    ]);
    expect(a.acks()[0]).toMatchObject({ status: SendAckStatus.OK });
    const inbox = mark.ms.messages.receiveMessages({ device: { accountId: mark.accountId, deviceId: 1 } });
    for await (const f of inbox) {
      if (f.frame.case === "envelope" && f.frame.value.type === EnvelopeType.SERVER_DELIVERY_RECEIPT) {
        // Alice's ack of Mark's message.
        expect(f.frame.value).toMatchObject({
          clientMessageId: "ms-1",
          source: { accountId: alice.accountId },
        });
      } else if (f.frame.case === "envelope") {
        expect(f.frame.value).toMatchObject({ clientMessageId: "wa-1", sourceApp: App.WHATSAPP });
        break;
      }
    }
  });
});

describe("groups", () => {
  test("creates a cross-app group, sends to it and reports member-device changes", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const mark = await messengerUser(stack);
    const a = openChat(alice);
    const b = openChat(bob);
    await b.until(() => b.drained() === 1);

    const { groupJid } = await alice.client.createGroup({ participants: [userJid(bob.jid), mark.jid] });
    const members = await alice.client.updateGroup({ groupJid });
    const expected = [
      { jid: bob.jid, registrationId: bob.registrationId },
      { jid: `${mark.id}:1@messenger`, registrationId: 321 },
    ];
    await a.send({ id: "g-1", to: groupJid, groupCiphertext: Buffer.from("skmsg"), participants: expected });
    await a.send({
      id: "g-2",
      to: groupJid,
      groupCiphertext: Buffer.from("skmsg"),
      participants: expected.slice(0, 1),
    });
    await a.until(() => a.acks().length === 2);
    await b.until(() => b.messages().length === 1);

    expect(groupJid).toMatch(/^[0-9a-f-]{36}@g\.us$/);
    expect(members.participants.sort()).toEqual([userJid(alice.jid), userJid(bob.jid), mark.jid].sort());
    const byId = new Map(a.acks().map((x) => [x.id, x]));
    expect(byId.get("g-1")).toMatchObject({ status: SendAckStatus.OK });
    expect(byId.get("g-2")).toMatchObject({
      status: SendAckStatus.DEVICES_CHANGED,
      missing: [`${mark.id}:1@messenger`],
    });
    expect(b.messages()[0]).toMatchObject({
      id: "g-1",
      group: groupJid,
      from: alice.jid,
      kind: MessageKind.SKMSG,
    });

    const after = await alice.client.updateGroup({ groupJid, remove: [mark.jid] });
    expect(after.participants.sort()).toEqual([userJid(alice.jid), userJid(bob.jid)].sort());
    await a.send({
      id: "g-3",
      to: "0b0e6f4e-8f43-4c5f-9a53-2f3b1f2f6a10@g.us",
      groupCiphertext: Buffer.from("x"),
    });
    await a.until(() => a.acks().length === 3);
    expect(a.acks()[2]).toMatchObject({ id: "g-3", status: SendAckStatus.NOT_FOUND });
  });

  test("refuses unknown participants", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    await expect(
      alice.client.createGroup({ participants: ["15550000001@s.whatsapp.net"] }),
    ).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "USER_NOT_FOUND",
    });
  });
});

describe("delivery restarts", () => {
  test("keeps chat streams through a delivery restart and re-drains without duplicates", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const b = openChat(bob, { autoAck: false });
    await b.until(() => b.drained() === 1);
    const to = await target(alice, bob);
    await a.send(textTo(to, "before", "m-1"));
    await b.until(() => b.messages().length === 1);

    await stack.restartDelivery();
    // The link reconnects in the background; a send during the reconnect fails retryably.
    for (let attempt = 0; ; attempt++) {
      const before = a.acks().length + a.errors().length;
      await a.send(textTo(to, "after", "m-2"));
      await a.until(() => a.acks().length + a.errors().length > before);
      if (a.acks().some((x) => x.id === "m-2")) break;
      expect(a.errors().at(-1)).toMatchObject({ id: "m-2" });
      expect([Code.Unavailable, Code.DeadlineExceeded]).toContain(a.errors().at(-1)?.code);
      if (attempt > 20) throw new Error("send never succeeded after the restart");
      await sleep(100);
    }
    await b.until(() => b.messages().length === 2 && b.drained() >= 2);
    await b.ack(b.messages().map((m) => m.serverId));
    await a.until(() => a.receipts().length === 2);

    expect(b.messages().map((m) => text(m.ciphertext))).toEqual(["before", "after"]);
    expect(b.done).toBe(false);
  });
});

describe("several gateway instances", () => {
  test("a stream on another instance displaces this one", async () => {
    const stack = await startStack();
    const other = await stack.addGateway();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const here = openChat(bob);
    await here.until(() => here.drained() === 1);

    const there = openChat({ ...bob, client: waClient(other.target, bob.token) });
    await there.until(() => there.drained() === 1);
    await here.until(() => here.done);
    const a = openChat(alice);
    await a.send(textTo(await target(alice, bob), "via the other instance", "m-1"));
    await there.until(() => there.messages().length === 1);

    expect(here.error).toMatchObject({ code: Code.Aborted, reason: "DISPLACED" });
    expect(stack.gateway.connections).toBe(1);
    expect(other.gateway.connections).toBe(1);
  });

  test("a device moves to another instance when its gateway stops, losing nothing", async () => {
    const stack = await startStack();
    const other = await stack.addGateway();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const to = await target(alice, bob);
    const first = openChat({ ...bob, client: waClient(other.target, bob.token) }, { autoAck: false });
    await first.until(() => first.drained() === 1);
    for (let i = 0; i < 5; i++) await a.send(textTo(to, `n${i}`, `m-${i}`));
    await first.until(() => first.messages().length === 5);
    await first.ack(
      first
        .messages()
        .slice(0, 2)
        .map((m) => m.serverId),
    );
    await a.until(() => a.receipts().length === 2);

    await other.close();
    await first.until(() => first.done);
    for (let i = 5; i < 8; i++) await a.send(textTo(to, `n${i}`, `m-${i}`));
    await a.until(() => a.acks().length === 8);
    const second = openChat(bob);
    await second.until(() => second.drained() === 1 && second.messages().length === 6);

    expect(first.error).toMatchObject({ code: Code.Unavailable });
    expect(second.messages().map((m) => text(m.ciphertext))).toEqual(["n2", "n3", "n4", "n5", "n6", "n7"]);
  });
});
