import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import { sql } from "kysely";
import { expect, test } from "vitest";
import {
  deleteDevice,
  findAccountByHandle,
  findAccountById,
  findAccountsByIds,
  findDeviceCredential,
  insertAccount,
  insertDevice,
  listDevices,
  storeKeys,
  countPreKeys,
} from "../src/index.js";
import {
  APP_MESSENGER,
  APP_WHATSAPP,
  createAccount,
  describeBackends,
  linkDevice,
  queueRow,
  queueRows,
} from "./backends.js";

const newAccount = (over: { app?: number; providerId?: string; handle?: string } = {}) => ({
  id: randomUUID(),
  app: over.app ?? APP_WHATSAPP,
  providerId: over.providerId ?? "",
  handle: over.handle ?? "+15550001111",
  registrationId: 42,
  deviceName: "phone",
  passwordHash: "scrypt$hash",
});

describeBackends("directory repository", (ctx) => {
  test("insertAccount stores the account with primary device 1", async () => {
    const a = newAccount();
    const { account, device } = await insertAccount(ctx.db, a);
    expect(account).toMatchObject({ id: a.id, app: APP_WHATSAPP, provider_id: "", handle: a.handle });
    expect(account.next_device_id).toBe(2);
    expect(account.created_at).toBeInstanceOf(Date);
    expect(device).toEqual({
      accountId: a.id,
      deviceId: 1,
      registrationId: 42,
      name: "phone",
      createdAt: expect.any(Date) as Date,
    });
  });

  test("insertAccount rejects a handle taken in the same app and provider with HANDLE_TAKEN", async () => {
    await insertAccount(ctx.db, newAccount());
    const err = await insertAccount(ctx.db, newAccount()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: Code.AlreadyExists, reason: "HANDLE_TAKEN" });
    // The same handle in another app, or under another provider, is a different account.
    await insertAccount(ctx.db, newAccount({ app: APP_MESSENGER }));
    await insertAccount(ctx.db, newAccount({ providerId: "acme" }));
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM accounts`.execute(ctx.db);
    expect(rows[0]?.n).toBe(3);
  });

  test("findAccountById and findAccountByHandle return the account or undefined", async () => {
    const a = newAccount({ providerId: "acme", handle: "alice" });
    await insertAccount(ctx.db, a);
    expect((await findAccountById(ctx.db, a.id))?.handle).toBe("alice");
    expect(await findAccountById(ctx.db, randomUUID())).toBeUndefined();
    expect((await findAccountByHandle(ctx.db, APP_WHATSAPP, "acme", "alice"))?.id).toBe(a.id);
    expect(await findAccountByHandle(ctx.db, APP_WHATSAPP, "", "alice")).toBeUndefined();
    expect(await findAccountByHandle(ctx.db, APP_MESSENGER, "acme", "alice")).toBeUndefined();
  });

  test("findAccountsByIds returns the accounts that exist", async () => {
    const a = await createAccount(ctx.db);
    const b = await createAccount(ctx.db);
    const found = await findAccountsByIds(ctx.db, [a.accountId, randomUUID(), b.accountId]);
    expect(found.map((r) => r.id).sort()).toEqual([a.accountId, b.accountId].sort());
    expect(await findAccountsByIds(ctx.db, [])).toEqual([]);
  });

  test("listDevices orders devices by account and device id", async () => {
    const a = await createAccount(ctx.db);
    const b = await createAccount(ctx.db);
    await linkDevice(ctx.db, b.accountId);
    await linkDevice(ctx.db, a.accountId);
    const list = await listDevices(ctx.db, [b.accountId, a.accountId]);
    const expected = [
      [a.accountId, 1],
      [a.accountId, 2],
      [b.accountId, 1],
      [b.accountId, 2],
    ].sort((x, y) => String(x[0]).localeCompare(String(y[0])) || Number(x[1]) - Number(y[1]));
    expect(list.map((d) => [d.accountId, d.deviceId])).toEqual(expected);
    expect(list.every((d) => d.createdAt instanceof Date)).toBe(true);
    expect(await listDevices(ctx.db, [])).toEqual([]);
  });

  test("insertDevice numbers devices from 2 and never reuses a removed device's id", async () => {
    const a = await createAccount(ctx.db);
    expect((await linkDevice(ctx.db, a.accountId)).deviceId).toBe(2);
    expect((await linkDevice(ctx.db, a.accountId)).deviceId).toBe(3);
    expect(await deleteDevice(ctx.db, a.accountId, 3)).toBe(true);
    expect((await linkDevice(ctx.db, a.accountId)).deviceId).toBe(4);
  });

  test("insertDevice fails with TOO_MANY_DEVICES at the limit and ACCOUNT_NOT_FOUND for no account", async () => {
    const a = await createAccount(ctx.db);
    const link = () =>
      insertDevice(ctx.db, {
        accountId: a.accountId,
        registrationId: 7,
        name: "",
        passwordHash: "h",
        maxDevices: 2,
      });
    await link();
    await expect(link()).rejects.toMatchObject({ code: Code.ResourceExhausted, reason: "TOO_MANY_DEVICES" });
    await expect(
      insertDevice(ctx.db, {
        accountId: randomUUID(),
        registrationId: 7,
        name: "",
        passwordHash: "h",
        maxDevices: 6,
      }),
    ).rejects.toMatchObject({ code: Code.NotFound, reason: "ACCOUNT_NOT_FOUND" });
  });

  test("concurrent insertDevice calls get distinct device ids", async () => {
    const a = await createAccount(ctx.db);
    const linked = await Promise.all(Array.from({ length: 5 }, () => linkDevice(ctx.db, a.accountId)));
    expect(linked.map((d) => d.deviceId).sort()).toEqual([2, 3, 4, 5, 6]);
    expect((await findAccountById(ctx.db, a.accountId))?.next_device_id).toBe(7);
  });

  test("deleteDevice removes the device with its keys and queue, and reports unknown devices", async () => {
    const a = await createAccount(ctx.db);
    const d2 = await linkDevice(ctx.db, a.accountId);
    await storeKeys(
      ctx.db,
      d2,
      {
        identityKey: new Uint8Array([1]),
        signedPreKey: { keyId: 1, publicKey: new Uint8Array([2]), signature: new Uint8Array([3]) },
        lastResortKyberPreKey: { keyId: 1, publicKey: new Uint8Array([4]), signature: new Uint8Array([5]) },
        oneTimePreKeys: [{ keyId: 1, publicKey: new Uint8Array([6]) }],
        kyberPreKeys: [{ keyId: 2, publicKey: new Uint8Array([7]), signature: new Uint8Array([8]) }],
      },
      100,
    );
    await queueRows(ctx.db, [queueRow(d2), queueRow(d2)]);

    expect(await deleteDevice(ctx.db, a.accountId, d2.deviceId)).toBe(true);
    expect((await listDevices(ctx.db, [a.accountId])).map((d) => d.deviceId)).toEqual([1]);
    expect(await countPreKeys(ctx.db, d2)).toEqual({ oneTime: 0, kyber: 0 });
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM queued_messages`.execute(ctx.db);
    expect(rows[0]?.n).toBe(0);
    expect(await deleteDevice(ctx.db, a.accountId, d2.deviceId)).toBe(false);
  });

  test("findDeviceCredential returns the password hash and app, or undefined", async () => {
    const a = await createAccount(ctx.db, { app: APP_MESSENGER, handle: "100200300" });
    expect(await findDeviceCredential(ctx.db, a.accountId, 1)).toEqual({
      passwordHash: "hash",
      app: APP_MESSENGER,
    });
    expect(await findDeviceCredential(ctx.db, a.accountId, 2)).toBeUndefined();
  });
});
