// Identity-key changes and broken sessions, through the real delivery service. The service keeps a
// device's address for life (device ids are never reused), so an address's identity key changes
// only when the device publishes a new one (UploadKeys with identity_key): `resetIdentity()`.
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { createFileStore } from "../src/index.js";
import { linkDevice, openClient, registerUser, startDelivery, texts, until } from "./harness.js";

describe("SwitchboardClient identity changes with the delivery service", () => {
  it("reports a peer's new identity key with the new safety number on every device that talked to it", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob1 = await registerUser(target);
    const bob2 = await linkDevice(target, bob1);
    for (const c of [alice, bob1, bob2]) c.client.start();
    await alice.client.sendMessage(bob1.accountId, { text: "hello bob" });
    await until(bob1, "message");
    await until(bob2, "message");
    await bob1.client.sendMessage(alice.accountId, { text: "hello alice" });
    await until(alice, "message");
    const before = await alice.client.safetyNumber(bob1.accountId, 1);
    expect(before?.displayable).toBe((await bob1.client.safetyNumber(alice.accountId, 1))?.displayable);

    await bob1.client.resetIdentity();

    // Bob's session reset reaches Alice and Bob's laptop, carrying the new key.
    const [change] = await until(alice, "identityChanged");
    const after = await bob1.client.safetyNumber(alice.accountId, 1);
    expect(change).toEqual({ accountId: bob1.accountId, deviceId: 1, safetyNumber: after?.displayable });
    expect(after?.displayable).not.toBe(before?.displayable);
    expect((await alice.client.safetyNumber(bob1.accountId, 1))?.displayable).toBe(after?.displayable);
    expect(
      await alice.client.verifySafetyNumber(bob1.accountId, 1, after?.scannable ?? new Uint8Array()),
    ).toBe(true);
    const [ownChange] = await until(bob2, "identityChanged");
    expect(ownChange).toMatchObject({ accountId: bob1.accountId, deviceId: 1 });

    // The conversation carries on both ways, and a newcomer's bundle has the new key (with
    // one-time Kyber keys re-signed by it: libsignal rejects the bundle otherwise).
    await alice.client.sendMessage(bob1.accountId, { text: "after the reset" });
    await bob1.client.sendMessage(alice.accountId, { text: "new key, same bob" });
    const carol = await registerUser(target);
    carol.client.start();
    await carol.client.sendMessage(bob1.accountId, { text: "hi from carol" });
    await until(bob1, "message", 3);
    await until(alice, "message", 2);
    expect(texts(bob1)).toEqual(["hello bob", "after the reset", "hi from carol"]);
    expect(texts(bob2)).toEqual(["hello bob", "after the reset", "hi from carol"]);
    expect(texts(alice)).toEqual(["hello alice", "new key, same bob"]);
    expect((await carol.client.safetyNumber(bob1.accountId, 1))?.displayable).toBe(
      (await bob1.client.safetyNumber(carol.accountId, 1))?.displayable,
    );
    expect(carol.events.identityChanged).toEqual([]);
    expect(alice.events.identityChanged).toHaveLength(1);
    for (const c of [alice, bob1, bob2, carol])
      expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });

  it("loses only what a peer wrote for the old key before reading the reset, and then recovers", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "hello bob" });
    await until(bob, "message");
    await bob.client.sendMessage(alice.accountId, { text: "hello alice" });

    // Alice is offline while Bob resets, and writes (with the old session) before reading her queue.
    await bob.client.resetIdentity();
    await alice.client.sendMessage(bob.accountId, { text: "written for the old key" });
    const [failure] = await until(bob, "decryptionFailed");
    expect(failure?.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });

    alice.client.start();
    const [change] = await until(alice, "identityChanged");
    expect(change?.safetyNumber).toBe((await bob.client.safetyNumber(alice.accountId, 1))?.displayable);
    await alice.client.sendMessage(bob.accountId, { text: "written after reading it" });
    await until(bob, "message", 2);
    expect(texts(bob)).toEqual(["hello bob", "written after reading it"]);
    expect(texts(alice)).toEqual(["hello alice"]);
    expect(bob.events.decryptionFailed).toHaveLength(1);
    for (const c of [alice, bob]) expect(c.events.error).toEqual([]);
  });

  it("resets a session that fails to decrypt (a device restored from an old backup) without an identity change", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sdk-int-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "bob.json");
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bobStore = await createFileStore(path);
    const bob = await registerUser(target, { store: bobStore });
    alice.client.start();
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "one" });
    await until(bob, "message", 1);
    await bob.client.stop();
    await bobStore.flush();
    await copyFile(path, `${path}.backup`);
    bob.client.start();

    // Two more round trips move both ratchets past the backup.
    for (let i = 0; i < 2; i++) {
      await bob.client.sendMessage(alice.accountId, { text: `reply ${i}` });
      await until(alice, "message", i + 1);
      await alice.client.sendMessage(bob.accountId, { text: `more ${i}` });
      await until(bob, "message", i + 2);
    }
    await until(bob, "deliveryReceipt", 2);
    await bob.client.close();
    await bobStore.close();
    await copyFile(`${path}.backup`, path);

    const restored = await openClient(target, { store: await createFileStore(path) });
    restored.client.start();
    await until(restored, "queueEmpty");
    await alice.client.sendMessage(bob.accountId, { text: "unreadable with the old state" });
    await until(restored, "decryptionFailed");
    // The restored device's reset gives Alice a new session (the server's receipt says she has
    // read it); her next message gets through.
    await until(restored, "deliveryReceipt");
    await alice.client.sendMessage(bob.accountId, { text: "after the session reset" });
    await until(restored, "message");
    expect(texts(restored)).toEqual(["after the session reset"]);
    expect(restored.events.decryptionFailed).toHaveLength(1);
    expect(alice.events.identityChanged).toEqual([]);
    expect(alice.events.decryptionFailed).toEqual([]);
    for (const c of [alice, restored]) expect(c.events.error).toEqual([]);
  });
});
