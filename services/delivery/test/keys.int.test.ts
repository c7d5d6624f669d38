import { randomBytes } from "node:crypto";
import { Code } from "@switchboard/errors";
import { describe, expect, test } from "vitest";
import { appAuth, clientsFor, createBackend, linkDevice, registerAccount, startInstance } from "./harness.js";

const ec = () => Buffer.concat([Buffer.from([5]), randomBytes(32)]);
const sig = () => randomBytes(64);
const kyber = () => randomBytes(1569);

async function uploadFull(target: string, auth: string, n: number, kyberN: number, identity = ec()) {
  const c = clientsFor(target, auth);
  return c.keys.uploadKeys({
    identityKey: identity,
    signedPreKey: { keyId: 1, publicKey: ec(), signature: sig() },
    oneTimePreKeys: Array.from({ length: n }, (_, i) => ({ keyId: 100 + i, publicKey: ec() })),
    kyberPreKeys: Array.from({ length: kyberN }, (_, i) => ({
      keyId: 500 + i,
      publicKey: kyber(),
      signature: sig(),
    })),
    lastResortKyberPreKey: { keyId: 999, publicKey: kyber(), signature: sig() },
  });
}

describe("KeyService", () => {
  test("hands out each one-time key at most once under concurrent fetches, then the last-resort Kyber key", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const bob = await registerAccount(inst.target);
    const up = await uploadFull(inst.target, bob.auth, 30, 20);
    expect(up).toMatchObject({ oneTimePreKeyCount: 30, kyberPreKeyCount: 20 });
    const fetchers = await Promise.all(Array.from({ length: 4 }, () => registerAccount(inst.target)));
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        clientsFor(inst.target, (fetchers[i % 4] as { auth: string }).auth).keys.getPreKeyBundles({
          accountId: bob.accountId,
          deviceId: 0,
        }),
      ),
    );
    const bundles = results.map((r) => (r.result.case === "bundles" ? r.result.value.bundles[0] : undefined));
    const ecIds = bundles.flatMap((b) => (b?.oneTimePreKey ? [b.oneTimePreKey.keyId] : []));
    expect(ecIds).toHaveLength(30);
    expect(new Set(ecIds).size).toBe(30);
    const kyberOneTime = bundles
      .filter((b) => b && !b.kyberPreKeyIsLastResort)
      .map((b) => b?.kyberPreKey?.keyId);
    expect(kyberOneTime).toHaveLength(20);
    expect(new Set(kyberOneTime).size).toBe(20);
    const lastResort = bundles.filter((b) => b?.kyberPreKeyIsLastResort);
    expect(lastResort).toHaveLength(20);
    expect(lastResort.every((b) => b?.kyberPreKey?.keyId === 999)).toBe(true);
    const count = await clientsFor(inst.target, bob.auth).keys.getPreKeyCount({});
    expect(count).toMatchObject({ oneTimePreKeyCount: 0, kyberPreKeyCount: 0 });
  });

  test("shows a rotated identity key at the next bundle fetch", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const bob = await registerAccount(inst.target);
    const alice = await registerAccount(inst.target);
    const first = ec();
    await uploadFull(inst.target, bob.auth, 1, 1, first);
    const a = await clientsFor(inst.target, alice.auth).keys.getPreKeyBundles({ accountId: bob.accountId });
    expect(
      a.result.case === "bundles" && Buffer.from(a.result.value.bundles[0]?.identityKey ?? []).equals(first),
    ).toBe(true);
    const second = ec();
    await clientsFor(inst.target, bob.auth).keys.uploadKeys({
      identityKey: second,
      signedPreKey: { keyId: 2, publicKey: ec(), signature: sig() },
      lastResortKyberPreKey: { keyId: 998, publicKey: kyber(), signature: sig() },
    });
    const b = await clientsFor(inst.target, alice.auth).keys.getPreKeyBundles({ accountId: bob.accountId });
    expect(
      b.result.case === "bundles" && Buffer.from(b.result.value.bundles[0]?.identityKey ?? []).equals(second),
    ).toBe(true);
  });

  test("requires identity, signed and last-resort keys on the first upload", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const bob = await registerAccount(inst.target);
    const err = await clientsFor(inst.target, bob.auth)
      .keys.uploadKeys({ oneTimePreKeys: [{ keyId: 1, publicKey: ec() }] })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.FailedPrecondition, reason: "KEYS_INCOMPLETE" });
  });

  test("returns bundles for every device and not-found for an unknown account", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const bob = await registerAccount(inst.target);
    const bob2 = await linkDevice(inst.target, bob);
    await uploadFull(inst.target, bob.auth, 2, 2);
    await uploadFull(inst.target, bob2.auth, 2, 2);
    const app = clientsFor(inst.target, appAuth("whatsapp"));
    const r = await app.keys.getPreKeyBundles({
      requester: { accountId: bob.accountId, deviceId: 1 },
      accountId: bob.accountId,
    });
    expect(r.result.case === "bundles" && r.result.value.bundles.map((b) => b.deviceId)).toEqual([
      1,
      bob2.deviceId,
    ]);
    const none = await app.keys.getPreKeyBundles({
      requester: { accountId: bob.accountId, deviceId: 1 },
      accountId: "00000000-0000-4000-8000-000000000000",
    });
    expect(none.result.case).toBe("notFound");
  });
});
