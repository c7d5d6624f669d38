import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App } from "@switchboard/proto";
import { describe, expect, it, onTestFinished } from "vitest";
import { createFileStore } from "../src/index.js";
import {
  linkDevice,
  openClient,
  registerUser,
  sleep,
  startDelivery,
  texts,
  until,
  withoutAcks,
} from "./harness.js";

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

  it("sends group messages with sender keys and rotates the key when a member is removed", async () => {
    const { target } = await startDelivery();
    const [alice, bob, carol] = await Promise.all([
      registerUser(target),
      registerUser(target),
      registerUser(target),
    ]);
    if (alice === undefined || bob === undefined || carol === undefined) throw new Error("unreachable");
    for (const c of [alice, bob, carol]) c.client.start();
    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);

    await alice.client.sendGroupMessage(group.id, { text: "hello group" });
    await until(bob, "message");
    await until(carol, "message");
    expect(bob.events.message[0]?.meta.groupId).toBe(group.id);

    const before = await alice.client.groupDistributionId(group.id);
    await alice.client.removeGroupMembers(group.id, [carol.accountId]);
    expect(await alice.client.groupDistributionId(group.id)).not.toBe(before);
    await alice.client.sendGroupMessage(group.id, { text: "without carol" });
    await until(bob, "message", 2);

    // Bob learns of the removal from the server's mismatch and rotates before sending.
    await bob.client.sendGroupMessage(group.id, { text: "bob agrees" });
    await until(alice, "message");
    await sleep(300);
    expect(texts(bob)).toEqual(["hello group", "without carol"]);
    expect(texts(alice)).toEqual(["bob agrees"]);
    expect(texts(carol)).toEqual(["hello group"]);
    for (const c of [alice, bob, carol])
      expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
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

  it("drops an envelope redelivered after a restart and continues the ratchet from the file store", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sdk-int-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "bob.json");
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    // Bob's first run loses its acks, so the server redelivers everything to the second run.
    const bobStore = await createFileStore(path);
    const bob = await registerUser(target, { store: bobStore, wrap: withoutAcks });
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "only once" });
    await until(bob, "message");
    await bob.client.close();
    await bobStore.close();

    const restarted = await openClient(target, { store: await createFileStore(path) });
    restarted.client.start();
    await until(restarted, "queueEmpty");
    expect(restarted.events.message).toEqual([]);
    await alice.client.sendMessage(bob.accountId, { text: "after the restart" });
    await until(restarted, "message");
    expect(texts(restarted)).toEqual(["after the restart"]);
    expect([restarted.events.decryptionFailed, restarted.events.error]).toEqual([[], []]);
  });
});
