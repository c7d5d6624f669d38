import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App, type Envelope } from "@switchboard/proto";
import { describe, expect, it, onTestFinished } from "vitest";
import { createFileStore } from "../src/index.js";
import {
  eventually,
  linkDevice,
  openClient,
  recordingReceived,
  registerUser,
  sleep,
  startDelivery,
  texts,
  timeline,
  until,
  withoutAcks,
  type TestClient,
} from "./harness.js";

const noFailures = (...clients: Pick<TestClient, "events">[]) => {
  for (const c of clients) expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
};

describe("SwitchboardClient with the delivery service", () => {
  it("exchanges PQXDH-encrypted messages both ways over Connect, with delivery receipts", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    alice.client.start();
    bob.client.start();

    const sent = await alice.client.sendMessage(bob.accountId, { text: "hello over gRPC" });
    expect(sent.kind).toBe("sent");
    await until(bob, "message");
    await bob.client.sendMessage(alice.accountId, { text: "hello back" });
    await until(alice, "message");
    await alice.client.sendMessage(bob.accountId, { text: "ratchet message" });
    await until(bob, "message", 2);

    expect(texts(bob)).toEqual(["hello over gRPC", "ratchet message"]);
    expect(texts(alice)).toEqual(["hello back"]);
    expect(bob.events.message[0]?.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });
    const receipts = await until(alice, "deliveryReceipt");
    expect(receipts[0]?.meta.clientMessageId).toBe(sent.kind === "sent" ? sent.clientMessageId : "");
    expect((await alice.client.safetyNumber(bob.accountId, 1))?.displayable).toBe(
      (await bob.client.safetyNumber(alice.accountId, 1))?.displayable,
    );
    expect(await alice.client.resolveHandle({ app: App.WHATSAPP, value: "+10000000000" })).toBeUndefined();
    for (const c of [alice, bob]) expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });

  it("links a device, syncs sent messages to it, and repairs a peer's outdated device list", async () => {
    const { target } = await startDelivery();
    const alice1 = await registerUser(target);
    const bob = await registerUser(target);
    bob.client.start();
    await alice1.client.sendMessage(bob.accountId, { text: "before linking" });
    await until(bob, "message");
    await bob.client.sendMessage(alice1.accountId, { text: "reply" });

    const alice2 = await linkDevice(target, alice1);
    expect(alice2.deviceId).toBe(2);
    alice1.client.start();
    alice2.client.start();
    await until(alice1, "message");

    // Bob's sessions cover only device 1: the server reports device 2 missing and the SDK retries.
    await bob.client.sendMessage(alice1.accountId, { text: "to both devices" });
    await until(alice2, "message");
    await until(alice1, "message", 2);
    expect(texts(alice2)).toEqual(["to both devices"]);

    await alice2.client.sendMessage(bob.accountId, { text: "from the laptop" });
    const synced = await until(alice1, "sync");
    expect([synced[0]?.destinationAccountId, synced[0]?.message.text]).toEqual([
      bob.accountId,
      "from the laptop",
    ]);
    await until(bob, "message", 2);
    expect(bob.events.message[1]?.meta.sender.deviceId).toBe(2);
    for (const c of [alice1, alice2, bob])
      expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });

  it("exchanges messages between two users with two devices each, and a device offline meanwhile catches up in order", async () => {
    const { target } = await startDelivery();
    const alice1 = await registerUser(target);
    const alice2 = await linkDevice(target, alice1);
    const bob1 = await registerUser(target);
    const bob2 = await linkDevice(target, bob1);
    const seen = {
      alice1: timeline(alice1),
      alice2: timeline(alice2),
      bob1: timeline(bob1),
      bob2: timeline(bob2),
    };
    for (const c of [alice1, alice2, bob1, bob2]) c.client.start();
    await alice1.client.sendMessage(bob1.accountId, { text: "a1: hi bob" });
    await until(bob2, "message");

    // Bob's laptop goes offline; both of Alice's devices and Bob's phone keep talking.
    await bob2.client.stop();
    await bob1.client.sendMessage(alice1.accountId, { text: "b1: hi alice" });
    await until(alice2, "message");
    await alice2.client.sendMessage(bob1.accountId, { text: "a2: from alice's laptop" });
    await until(bob1, "message", 2);
    await bob1.client.sendMessage(alice1.accountId, { text: "b2: got it on my phone" });
    await alice1.client.sendMessage(bob1.accountId, { text: "a3: from alice's phone again" });
    await until(bob1, "message", 3);
    await until(alice1, "message", 2);
    await until(alice2, "message", 2);

    bob2.client.start();
    await until(bob2, "message", 3);
    await until(bob2, "sync", 2);
    expect(seen.bob2).toEqual([
      "message:a1: hi bob",
      "sync:b1: hi alice",
      "message:a2: from alice's laptop",
      "sync:b2: got it on my phone",
      "message:a3: from alice's phone again",
    ]);
    expect(bob2.events.message.map((m) => m.meta.sender.deviceId)).toEqual([1, 2, 1]);
    expect(bob2.events.sync.map((s) => s.destinationAccountId)).toEqual([alice1.accountId, alice1.accountId]);

    // The device that was offline answers; everyone else gets it, Bob's phone as a sync copy.
    await bob2.client.sendMessage(alice1.accountId, { text: "b3: back on my laptop" });
    await until(alice1, "message", 3);
    await until(alice2, "message", 3);
    await until(bob1, "sync", 1);
    expect(seen.bob1).toEqual([
      "message:a1: hi bob",
      "message:a2: from alice's laptop",
      "message:a3: from alice's phone again",
      "sync:b3: back on my laptop",
    ]);
    for (const alice of [seen.alice1, seen.alice2]) {
      expect(alice.filter((e) => e.startsWith("message:"))).toEqual([
        "message:b1: hi alice",
        "message:b2: got it on my phone",
        "message:b3: back on my laptop",
      ]);
    }
    expect(seen.alice1.filter((e) => e.startsWith("sync:"))).toEqual(["sync:a2: from alice's laptop"]);
    expect(seen.alice2.filter((e) => e.startsWith("sync:"))).toEqual([
      "sync:a1: hi bob",
      "sync:a3: from alice's phone again",
    ]);
    expect(alice1.events.message.map((m) => m.meta.sender.deviceId)).toEqual([1, 1, 2]);
    noFailures(alice1, alice2, bob1, bob2);
  });

  it("repairs the device list after a peer replaces a device (extra and missing devices at once)", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob1 = await registerUser(target);
    const bob2 = await linkDevice(target, bob1);
    alice.client.start();
    bob1.client.start();
    bob2.client.start();
    await alice.client.sendMessage(bob1.accountId, { text: "first" });
    await until(bob2, "message");

    await bob2.client.stop();
    await bob1.client.unlinkDevice(bob2.deviceId);
    const replacement = await linkDevice(target, bob1);
    expect(replacement.deviceId).not.toBe(bob2.deviceId);
    replacement.client.start();

    await alice.client.sendMessage(bob1.accountId, { text: "after the replacement" });
    await until(replacement, "message");
    await until(bob1, "message", 2);
    expect(texts(replacement)).toEqual(["after the replacement"]);
    expect(texts(bob1)).toEqual(["first", "after the replacement"]);
    expect(alice.events.identityChanged).toEqual([]);
    for (const c of [alice, bob1, replacement])
      expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });

  it("keeps a three-member group readable for the remaining members and closed to a removed one", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bobEnvelopes: Envelope[] = [];
    const bob = await registerUser(target, { wrap: (t) => recordingReceived(t, bobEnvelopes) });
    const bob2 = await linkDevice(target, bob);
    const carol = await registerUser(target);
    for (const c of [alice, bob, bob2, carol]) c.client.start();
    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);

    await alice.client.sendGroupMessage(group.id, { text: "hello group" });
    await bob.client.sendGroupMessage(group.id, { text: "hi from bob" });
    for (const c of [bob, bob2, carol]) await until(c, "message", c === carol ? 2 : 1);
    await until(alice, "message");
    expect(texts(carol)).toEqual(["hello group", "hi from bob"]);
    expect(bob.events.message[0]?.meta.groupId).toBe(group.id);
    expect(bob2.events.sync.map((e) => e.message.text)).toEqual(["hi from bob"]);

    const aliceKey = await alice.client.groupDistributionId(group.id);
    const bobKey = await bob.client.groupDistributionId(group.id);
    await alice.client.removeGroupMembers(group.id, [carol.accountId]);
    expect(await alice.client.groupDistributionId(group.id)).not.toBe(aliceKey);
    await alice.client.sendGroupMessage(group.id, { text: "without carol" });
    await until(bob, "message", 2);
    await until(bob2, "message", 2);

    // Bob learns of the removal from the server's mismatch and rotates before sending.
    await bob.client.sendGroupMessage(group.id, { text: "bob agrees" });
    expect(await bob.client.groupDistributionId(group.id)).not.toBe(bobKey);
    await until(alice, "message", 2);
    await until(bob2, "sync", 2);
    expect(await carol.client.sendGroupMessage(group.id, { text: "let me back in" })).toEqual({
      kind: "not_a_member",
    });
    await sleep(300);
    expect(texts(alice)).toEqual(["hi from bob", "bob agrees"]);
    expect(texts(bob)).toEqual(["hello group", "without carol"]);
    expect(texts(bob2)).toEqual(["hello group", "without carol"]);
    expect(bob2.events.sync.map((e) => e.message.text)).toEqual(["hi from bob", "bob agrees"]);
    expect(texts(carol)).toEqual(["hello group", "hi from bob"]);
    noFailures(alice, bob, bob2, carol);

    // Even holding the ciphertext, Carol cannot read what Alice sent after removing her: it uses
    // a sender key Carol never received.
    const groupEnvelopes = bobEnvelopes.filter((e) => e.groupId === group.id);
    expect(groupEnvelopes).toHaveLength(2);
    await carol.client.processEnvelope(groupEnvelopes[1] as Envelope);
    expect(carol.events.decryptionFailed).toHaveLength(1);
    expect(texts(carol)).toEqual(["hello group", "hi from bob"]);
  });

  it("refills one-time pre-keys when the server runs low", async () => {
    const { target } = await startDelivery();
    const bob = await registerUser(target, { preKeyBatchSize: 5, preKeyRefillThreshold: 3 });
    for (let i = 0; i < 3; i++) {
      const sender = await registerUser(target);
      await sender.client.sendMessage(bob.accountId, { text: `hello ${i}` });
    }
    expect(await bob.client.maintainKeys()).toEqual({
      uploadedPreKeys: 5,
      uploadedKyberPreKeys: 5,
      rotatedSignedPreKey: false,
    });
    bob.client.start();
    await until(bob, "message", 3);
    expect([bob.events.decryptionFailed, bob.events.error]).toEqual([[], []]);
  });

  it("redelivers envelopes a stopped client never acknowledged, and the restarted app sees each message once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sdk-int-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "bob.json");
    const { target, db } = await startDelivery();
    const alice = await registerUser(target);
    // Bob's first run handles every message but its acks never reach the server, as when the
    // process dies between handling an envelope and acknowledging it.
    const firstRun: Envelope[] = [];
    const bobStore = await createFileStore(path);
    const bob = await registerUser(target, {
      store: bobStore,
      wrap: (t) => recordingReceived(withoutAcks(t), firstRun),
    });
    bob.client.start();
    for (const text of ["one", "two", "three"]) await alice.client.sendMessage(bob.accountId, { text });
    await until(bob, "message", 3);
    expect(texts(bob)).toEqual(["one", "two", "three"]);
    await bob.client.close();
    await bobStore.close();
    const queued = () =>
      db
        .selectFrom("queued_messages")
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .where("account_id", "=", bob.accountId)
        .executeTakeFirstOrThrow()
        .then((r) => Number(r.n));
    expect(await queued()).toBe(3);

    const secondRun: Envelope[] = [];
    const restarted = await openClient(target, {
      store: await createFileStore(path),
      wrap: (t) => recordingReceived(t, secondRun),
    });
    restarted.client.start();
    await until(restarted, "queueEmpty");
    // The server redelivered all three; the client acknowledged and dropped them.
    expect(secondRun.map((e) => e.id)).toEqual(firstRun.map((e) => e.id));
    expect(restarted.events.message).toEqual([]);
    await eventually(async () => expect(await queued()).toBe(0));

    await alice.client.sendMessage(bob.accountId, { text: "after the restart" });
    await until(restarted, "message");
    expect(texts(restarted)).toEqual(["after the restart"]);
    noFailures(restarted);
  });
});
