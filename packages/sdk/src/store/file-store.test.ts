import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrivateKey, PreKeyRecord } from "@signalapp/libsignal-client";
import { Code } from "@switchboard/errors";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore } from "./file-store.js";

describe("createFileStore", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sdk-file-store-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("persists state across reopen, owner-only, leaving no temporary files", async () => {
    const path = join(dir, "nested", "device.json");
    const store = await createFileStore(path);
    const key = PrivateKey.generate();
    await store.preKey.savePreKey(7, PreKeyRecord.new(7, key.getPublicKey(), key));
    await store.state.markProcessed({ serverId: "m1", senderClientId: "a.1|c1" }, 1);
    await store.close();

    expect(await readdir(join(dir, "nested"))).toEqual(["device.json"]);
    expect((await stat(path)).mode & 0o777).toBe(0o600);

    const reopened = await createFileStore(path);
    expect((await reopened.preKey.getPreKey(7)).publicKey().serialize()).toEqual(
      key.getPublicKey().serialize(),
    );
    expect(await reopened.state.isProcessed({ serverId: "m1" })).toBe(true);
    expect(await reopened.state.isProcessed({ serverId: "m2", senderClientId: "a.1|c1" })).toBe(true);
    expect(await reopened.state.isProcessed({ serverId: "m2", senderClientId: "a.1|c2" })).toBe(false);
  });

  it("keeps request previews across reopen, and opens a file written before previews existed", async () => {
    const path = join(dir, "held.json");
    const store = await createFileStore(path);
    await store.state.addHeld({ serverId: "m1", envelope: "ZW52", content: "Y29udGVudA==" });
    await store.state.addHeld({ serverId: "m2", envelope: "ZW52", content: "c2Vjb25k" });
    await store.state.removeHeld("m2");
    await store.close();
    const reopened = await createFileStore(path);
    expect(await reopened.state.findHeld("m1")).toEqual({
      serverId: "m1",
      envelope: "ZW52",
      content: "Y29udGVudA==",
    });
    expect(await reopened.state.findHeld("m2")).toBeUndefined();

    const old = join(dir, "old.json");
    const { held: _held, ...before } = reopened.snapshot();
    await writeFile(old, JSON.stringify(before));
    const upgraded = await createFileStore(old);
    expect(await upgraded.state.listHeld()).toEqual([]);
    await upgraded.state.addHeld({ serverId: "m3", envelope: "", content: "" });
    expect((await upgraded.state.listHeld()).map((h) => h.serverId)).toEqual(["m3"]);
  });

  it("prunes the oldest de-duplication entries beyond its capacity", async () => {
    const store = await createFileStore(join(dir, "d.json"), { maxProcessedEntries: 2 });
    for (let i = 1; i <= 3; i++) await store.state.markProcessed({ serverId: `m${i}` }, i);
    expect(await store.state.isProcessed({ serverId: "m1" })).toBe(false);
    expect(await store.state.isProcessed({ serverId: "m3" })).toBe(true);
  });

  it("rejects a file that is not a store with DATA_LOSS", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, "{ not json");
    await expect(createFileStore(path)).rejects.toMatchObject({
      code: Code.DataLoss,
      reason: "STORE_CORRUPT",
    });
    await writeFile(path, JSON.stringify({ version: 99 }));
    await expect(createFileStore(path)).rejects.toMatchObject({
      code: Code.DataLoss,
      reason: "STORE_CORRUPT",
    });
  });

  it("rejects reuse of a last-resort Kyber pre-key with the same base key", async () => {
    const { KEMKeyPair, KyberPreKeyRecord, IdentityKeyPair } = await import("@signalapp/libsignal-client");
    const store = await createFileStore(join(dir, "k.json"));
    const identity = IdentityKeyPair.generate();
    const pair = KEMKeyPair.generate();
    const record = KyberPreKeyRecord.new(
      1,
      0,
      pair,
      identity.privateKey.sign(pair.getPublicKey().serialize()),
    );
    await store.kyberPreKey.saveKyberPreKey(1, record, { lastResort: true });
    await store.kyberPreKey.saveKyberPreKey(2, record);
    const base = PrivateKey.generate().getPublicKey();
    await store.kyberPreKey.markKyberPreKeyUsed(1, 1, base);
    await expect(store.kyberPreKey.markKyberPreKeyUsed(1, 1, base)).rejects.toMatchObject({
      reason: "KYBER_PRE_KEY_REUSED",
    });
    await store.kyberPreKey.markKyberPreKeyUsed(1, 1, PrivateKey.generate().getPublicKey());
    await store.kyberPreKey.markKyberPreKeyUsed(2, 1, base);
    await expect(store.kyberPreKey.getKyberPreKey(2)).rejects.toMatchObject({ code: Code.NotFound });
  });
});
