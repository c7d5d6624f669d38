import { randomUUID } from "node:crypto";
import { Code } from "@switchboard/errors";
import { expect, test } from "vitest";
import { claimBundles, countPreKeys, storeKeys, type KeyUpload, type StoredPreKey } from "../src/index.js";
import { createAccount, describeBackends, linkDevice, plain } from "./backends.js";

const bytes = (...b: number[]) => new Uint8Array(b);
const oneTime = (from: number, n: number): StoredPreKey[] =>
  Array.from({ length: n }, (_, i) => ({ keyId: from + i, publicKey: bytes(0x05, from + i) }));
const kyber = (from: number, n: number): StoredPreKey[] =>
  Array.from({ length: n }, (_, i) => ({
    keyId: from + i,
    publicKey: bytes(0x08, from + i),
    signature: bytes(0x5, 0x16, from + i),
  }));

/** A complete first upload: identity, signed and last-resort keys plus the given one-time keys. */
const firstUpload = (over: Partial<KeyUpload> = {}): KeyUpload => ({
  identityKey: bytes(0x05, 1, 2, 3),
  signedPreKey: { keyId: 7, publicKey: bytes(0x05, 7), signature: bytes(0x51, 0x67) },
  lastResortKyberPreKey: { keyId: 900, publicKey: bytes(0x08, 9, 0, 0), signature: bytes(0x1a, 0x57) },
  oneTimePreKeys: [],
  kyberPreKeys: [],
  ...over,
});

describeBackends("key repository", (ctx) => {
  test("storeKeys rejects a first upload without identity, signed and last-resort keys", async () => {
    const d = await createAccount(ctx.db);
    await expect(
      storeKeys(ctx.db, d, { identityKey: bytes(1), oneTimePreKeys: oneTime(1, 3), kyberPreKeys: [] }, 100),
    ).rejects.toMatchObject({ code: Code.FailedPrecondition, reason: "KEYS_INCOMPLETE" });
    expect(await countPreKeys(ctx.db, d)).toEqual({ oneTime: 0, kyber: 0 });
    await expect(
      storeKeys(ctx.db, { accountId: randomUUID(), deviceId: 1 }, firstUpload(), 100),
    ).rejects.toMatchObject({ code: Code.NotFound, reason: "DEVICE_NOT_FOUND" });
  });

  test("storeKeys counts stored keys and replaces a one-time key uploaded again under its id", async () => {
    const d = await createAccount(ctx.db);
    expect(
      await storeKeys(
        ctx.db,
        d,
        firstUpload({ oneTimePreKeys: oneTime(1, 3), kyberPreKeys: kyber(1, 2) }),
        100,
      ),
    ).toEqual({ oneTime: 3, kyber: 2 });
    // Later uploads may carry one-time keys only; key 3 is replaced, not duplicated.
    const replaced = { keyId: 3, publicKey: bytes(0xee) };
    expect(
      await storeKeys(ctx.db, d, { oneTimePreKeys: [replaced, ...oneTime(4, 2)], kyberPreKeys: [] }, 100),
    ).toEqual({ oneTime: 5, kyber: 2 });
    const claimed = [];
    for (let i = 0; i < 3; i++) claimed.push((await claimBundles(ctx.db, d.accountId, 1))[0]?.oneTimePreKey);
    expect(claimed[2]).toEqual({ keyId: 3, publicKey: Buffer.from([0xee]) });
  });

  test("storeKeys rejects more than maxStored one-time keys of a kind and stores none of them", async () => {
    const d = await createAccount(ctx.db);
    await storeKeys(ctx.db, d, firstUpload({ oneTimePreKeys: oneTime(1, 4) }), 5);
    await expect(
      storeKeys(ctx.db, d, { oneTimePreKeys: oneTime(10, 2), kyberPreKeys: [] }, 5),
    ).rejects.toMatchObject({ code: Code.ResourceExhausted, reason: "TOO_MANY_PREKEYS" });
    expect(await countPreKeys(ctx.db, d)).toEqual({ oneTime: 4, kyber: 0 });
  });

  test("countPreKeys counts per device", async () => {
    const d = await createAccount(ctx.db);
    const d2 = await linkDevice(ctx.db, d.accountId);
    await storeKeys(
      ctx.db,
      d2,
      firstUpload({ oneTimePreKeys: oneTime(1, 2), kyberPreKeys: kyber(1, 3) }),
      100,
    );
    expect(await countPreKeys(ctx.db, d2)).toEqual({ oneTime: 2, kyber: 3 });
    expect(await countPreKeys(ctx.db, d)).toEqual({ oneTime: 0, kyber: 0 });
  });

  test("claimBundles returns one bundle per keyed device and consumes the lowest one-time keys", async () => {
    const d = await createAccount(ctx.db, { registrationId: 4242 });
    await linkDevice(ctx.db, d.accountId); // no keys uploaded: not part of the bundle
    const d3 = await linkDevice(ctx.db, d.accountId);
    await storeKeys(
      ctx.db,
      d,
      firstUpload({ oneTimePreKeys: oneTime(5, 2), kyberPreKeys: kyber(3, 2) }),
      100,
    );
    await storeKeys(ctx.db, d3, firstUpload(), 100);

    const bundles = await claimBundles(ctx.db, d.accountId, 0);
    expect(bundles.map((b) => b.deviceId)).toEqual([1, 3]);
    const [b1, b3] = bundles;
    expect(b1).toMatchObject({ deviceId: 1, registrationId: 4242, kyberIsLastResort: false });
    expect(plain(b1?.identityKey)).toEqual(bytes(0x05, 1, 2, 3));
    expect(b1?.signedPreKey.keyId).toBe(7);
    expect(plain(b1?.signedPreKey.publicKey)).toEqual(bytes(0x05, 7));
    expect(plain(b1?.signedPreKey.signature)).toEqual(bytes(0x51, 0x67));
    expect(b1?.oneTimePreKey?.keyId).toBe(5);
    expect(plain(b1?.oneTimePreKey?.publicKey)).toEqual(bytes(0x05, 5));
    expect(b1?.kyberPreKey.keyId).toBe(3);
    expect(plain(b1?.kyberPreKey.publicKey)).toEqual(bytes(0x08, 3));
    expect(plain(b1?.kyberPreKey.signature)).toEqual(bytes(0x5, 0x16, 3));
    // Both backends hand out Buffers.
    expect(Buffer.isBuffer(b1?.identityKey)).toBe(true);
    expect(Buffer.isBuffer(b1?.oneTimePreKey?.publicKey)).toBe(true);
    // Device 3 has no one-time keys: no EC one-time key, and the last-resort Kyber key.
    expect(b3?.oneTimePreKey).toBeUndefined();
    expect(b3?.kyberIsLastResort).toBe(true);
    expect(b3?.kyberPreKey.keyId).toBe(900);
    expect(plain(b3?.kyberPreKey.publicKey)).toEqual(bytes(0x08, 9, 0, 0));
    expect(plain(b3?.kyberPreKey.signature)).toEqual(bytes(0x1a, 0x57));

    expect(await countPreKeys(ctx.db, d)).toEqual({ oneTime: 1, kyber: 1 });
    const again = await claimBundles(ctx.db, d.accountId, 1);
    expect(again.map((b) => [b.oneTimePreKey?.keyId, b.kyberPreKey.keyId])).toEqual([[6, 4]]);
    const exhausted = await claimBundles(ctx.db, d.accountId, 1);
    expect(exhausted[0]?.oneTimePreKey).toBeUndefined();
    expect(exhausted[0]).toMatchObject({ kyberIsLastResort: true, kyberPreKey: { keyId: 900 } });
    // The last-resort key is kept.
    expect((await claimBundles(ctx.db, d.accountId, 1))[0]?.kyberPreKey.keyId).toBe(900);
  });

  test("claimBundles returns nothing for an unknown account or device", async () => {
    const d = await createAccount(ctx.db);
    await storeKeys(ctx.db, d, firstUpload(), 100);
    expect(await claimBundles(ctx.db, randomUUID(), 0)).toEqual([]);
    expect(await claimBundles(ctx.db, d.accountId, 2)).toEqual([]);
  });

  test("concurrent claims never hand out the same one-time key twice", async () => {
    const d = await createAccount(ctx.db);
    await storeKeys(
      ctx.db,
      d,
      firstUpload({ oneTimePreKeys: oneTime(1, 12), kyberPreKeys: kyber(1, 12) }),
      100,
    );
    const claims = await Promise.all(Array.from({ length: 20 }, () => claimBundles(ctx.db, d.accountId, 1)));
    const bundles = claims.flat();
    expect(bundles).toHaveLength(20);
    const ecIds = bundles.flatMap((b) => (b.oneTimePreKey ? [b.oneTimePreKey.keyId] : []));
    const kyIds = bundles.flatMap((b) => (b.kyberIsLastResort ? [] : [b.kyberPreKey.keyId]));
    expect(new Set(ecIds).size).toBe(ecIds.length);
    expect(new Set(kyIds).size).toBe(kyIds.length);
    // SKIP LOCKED may leave a racing claim without a key while one is still stored; none is lost.
    const left = await countPreKeys(ctx.db, d);
    expect(ecIds.length + left.oneTime).toBe(12);
    expect(kyIds.length + left.kyber).toBe(12);
    expect(bundles.filter((b) => b.kyberIsLastResort).every((b) => b.kyberPreKey.keyId === 900)).toBe(true);
    if (ctx.name === "pglite") {
      // One connection: claims run one after another, so all twelve keys are handed out.
      expect(ecIds.sort((x, y) => x - y)).toEqual(oneTime(1, 12).map((k) => k.keyId));
    }
  });
});
