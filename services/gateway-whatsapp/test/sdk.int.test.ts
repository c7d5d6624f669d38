// The SDK client living on the WhatsApp-style app: end-to-end encrypted messaging through this
// gateway's native API (createWhatsAppTransport) and a real delivery service.
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient as createGrpcClient, type BidiOpener } from "@switchboard/grpc";
import { App, whatsapp } from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { startStack } from "./harness.js";
import { openUser, registerUser, until, type Recorded, type WaUser } from "./sdk-users.js";

const texts = (u: { events: Recorded }) => u.events.message.map((m) => m.message.text);
const noFailures = (...users: WaUser[]) => {
  for (const u of users) expect([u.events.decryptionFailed, u.events.error]).toEqual([[], []]);
};

describe("the SDK over createWhatsAppTransport", () => {
  test("exchanges end-to-end encrypted messages both ways, with delivery receipts", async () => {
    const stack = await startStack();
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    alice.client.start();
    bob.client.start();

    const found = await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    const sent = await alice.client.sendMessage(bob.accountId, { text: "hello over the chat stream" });
    await until(bob, "message");
    await bob.client.sendMessage(alice.accountId, { text: "hello back" });
    await until(alice, "message");
    await alice.client.sendMessage(bob.accountId, { text: "ratchet message" });
    await until(bob, "message", 2);
    const receipts = await until(alice, "deliveryReceipt");

    expect(alice.sessions).toEqual([
      expect.objectContaining({
        jid: `${alice.phone.slice(1)}:1@s.whatsapp.net`,
        accountId: alice.accountId,
      }),
    ]);
    expect(found?.account?.id).toBe(bob.accountId);
    expect(texts(bob)).toEqual(["hello over the chat stream", "ratchet message"]);
    expect(texts(alice)).toEqual(["hello back"]);
    expect(bob.events.message[0]?.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });
    expect(receipts[0]?.meta).toMatchObject({
      clientMessageId: sent.kind === "sent" ? sent.clientMessageId : "",
      sender: { accountId: bob.accountId, deviceId: 1 },
    });
    expect((await alice.client.safetyNumber(bob.accountId, 1))?.displayable).toBe(
      (await bob.client.safetyNumber(alice.accountId, 1))?.displayable,
    );
    noFailures(alice, bob);
  });

  test("sends to a group through the sender-key path", async () => {
    const stack = await startStack();
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    const carol = await registerUser(stack);
    for (const u of [alice, bob, carol]) u.client.start();
    for (const u of [bob, carol]) await alice.client.resolveHandle({ app: App.WHATSAPP, value: u.phone });

    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);
    const first = await alice.client.sendGroupMessage(group.id, { text: "hi group" });
    await until(bob, "message");
    await until(carol, "message");
    const reply = await bob.client.sendGroupMessage(group.id, { text: "hi alice" });
    await until(alice, "message");
    await until(carol, "message", 2);

    expect(group.members.map((m) => m.account?.id).sort()).toEqual(
      [alice.accountId, bob.accountId, carol.accountId].sort(),
    );
    expect(first.kind).toBe("sent");
    expect(reply.kind).toBe("sent");
    expect(texts(bob)).toEqual(["hi group"]);
    expect(texts(carol)).toEqual(["hi group", "hi alice"]);
    expect(texts(alice)).toEqual(["hi alice"]);
    expect(carol.events.message.map((m) => m.meta.groupId)).toEqual([group.id, group.id]);
    noFailures(alice, bob, carol);
  });

  test("links a companion with a link code; both devices receive and sent messages sync", async () => {
    const stack = await startStack();
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    alice.client.start();
    bob.client.start();
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    await alice.client.sendMessage(bob.accountId, { text: "before linking" });
    await until(bob, "message");

    const { code } = await bob.transport.createLinkCode();
    const bob2u = await openUser(stack, bob.phone);
    const linked = await bob2u.client.registerDevice({ accountId: bob.accountId, appToken: code });
    const bob2: WaUser = { ...bob2u, accountId: linked.accountId, deviceId: linked.deviceId };
    bob2.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "after linking" });
    await until(bob, "message", 2);
    await until(bob2, "message");
    await bob.client.refreshOwnDevices();
    await bob.client.sendMessage(alice.accountId, { text: "from bob's phone" });
    await until(alice, "message");
    await until(bob2, "sync");

    expect(linked.deviceId).toBe(2);
    expect(bob2.sessions[0]?.jid).toBe(`${bob.phone.slice(1)}:2@s.whatsapp.net`);
    expect(texts(bob)).toEqual(["before linking", "after linking"]);
    expect(texts(bob2)).toEqual(["after linking"]);
    expect(bob2.events.sync[0]).toMatchObject({
      destinationAccountId: alice.accountId,
      message: { text: "from bob's phone" },
    });
    noFailures(alice, bob, bob2);
  });

  test("restores a saved session and catches up on messages queued while offline", async () => {
    const stack = await startStack();
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    alice.client.start();
    bob.client.start();
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    await alice.client.sendMessage(bob.accountId, { text: "while online" });
    await until(bob, "message");
    await bob.client.close();
    await bob.transport.close();
    for (let i = 0; i < 5; i++) await alice.client.sendMessage(bob.accountId, { text: `queued ${i}` });

    const again = await openUser(stack, bob.phone, { store: bob.store, session: bob.sessions[0] });
    again.client.start();
    await until(again, "message", 5);
    await until(again, "queueEmpty");

    expect(again.client.address).toEqual({ accountId: bob.accountId, deviceId: 1 });
    expect(texts(again)).toEqual([0, 1, 2, 3, 4].map((i) => `queued ${i}`));
    expect(again.sessions).toEqual([]);
    noFailures(alice, bob, { ...again, accountId: bob.accountId, deviceId: 1 });
  });

  test("opens the Chat stream through openChat when one is given", async () => {
    const stack = await startStack();
    const ack = { frame: { case: "ack" as const, value: { ids: ["a", "b"] } } };
    const calls: { path: string; metadata: Record<string, string>; ackBytes: Uint8Array }[] = [];
    // An opener over grpc-js with the metadata and codecs it is handed.
    const openChat: BidiOpener = (call) => {
      calls.push({ path: call.path, metadata: call.metadata, ackBytes: call.encode(ack as never) });
      const client = createGrpcClient(whatsapp.WhatsAppService, stack.target, {
        metadata: () => call.metadata,
        codecs: { chat: { encode: call.encode as never, decode: call.decode as never } },
      });
      onTestFinished(() => client.close());
      return client.chat() as never;
    };
    const alice = await registerUser(stack, openChat);
    const bob = await registerUser(stack);
    alice.client.start();
    bob.client.start();
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    await alice.client.sendMessage(bob.accountId, { text: "over the opener" });
    await until(bob, "message");
    await bob.client.sendMessage(alice.accountId, { text: "back over it" });
    await until(alice, "message");
    await until(alice, "deliveryReceipt");

    expect(texts(bob)).toEqual(["over the opener"]);
    expect(texts(alice)).toEqual(["back over it"]);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      path: "/switchboard.gateway.whatsapp.v1.WhatsAppService/Chat",
      metadata: { authorization: `Bearer ${alice.sessions[0]?.token}` },
    });
    // The hand-written Chat codecs: the bytes protobuf-es writes.
    expect(Buffer.from(calls[0]!.ackBytes)).toEqual(
      Buffer.from(toBinary(whatsapp.ChatRequestSchema, create(whatsapp.ChatRequestSchema, ack))),
    );
    noFailures(alice, bob);
  });
});
