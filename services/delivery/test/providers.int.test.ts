import { randomBytes, randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import { App, EnvelopeType } from "@switchboard/proto";
import { sql } from "kysely";
import { describe, expect, test } from "vitest";
import { addProvider, revokeProviderById } from "../src/providers/provider-admin.js";
import {
  appAuth,
  clientsFor,
  connectDevice,
  createBackend,
  deviceAuth,
  registerAccount,
  sendTo,
  startInstance,
  text,
  type TestDevice,
} from "./harness.js";

/** Registers a provider user through the provider's bearer token. */
async function registerProviderUser(target: string, token: string, providerId: string, value: string) {
  const c = clientsFor(target, `Bearer ${token}`);
  const password = randomBytes(18).toString("base64url");
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await c.directory.registerAccount({
    handle: { app: App.THIRD_PARTY, providerId, value },
    registrationId,
    password,
  });
  const accountId = r.account?.id ?? "";
  return { accountId, deviceId: 1, registrationId, password, auth: deviceAuth(accountId, 1, password) };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

async function setup() {
  const backend = await createBackend();
  const inst = await startInstance(backend);
  const { token } = await addProvider(backend.db, { id: "acme", displayName: "Acme Chat" });
  return { backend, inst, token };
}

async function queuedCount(backend: Awaited<ReturnType<typeof createBackend>>) {
  const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM queued_messages`.execute(backend.db);
  return r.rows[0]?.n ?? -1;
}

describe("third-party providers", () => {
  test("a registry token authenticates its provider and its users until it is revoked, and is stored only as a hash", async () => {
    const { backend, inst, token } = await setup();
    const user = await registerProviderUser(inst.target, token, "acme", "wile");
    expect(user.accountId).toMatch(/^[0-9a-f-]{36}$/);
    const stored = await sql<{ token_hash: Buffer }>`SELECT token_hash FROM providers`.execute(backend.db);
    expect(Buffer.from(stored.rows[0]?.token_hash ?? []).length).toBe(32);
    expect(Buffer.from(stored.rows[0]?.token_hash ?? []).toString()).not.toContain(token);

    await revokeProviderById(backend.db, "acme");
    const err = await failure(registerProviderUser(inst.target, token, "acme", "road.runner"));
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: Code.Unauthenticated, reason: "CREDENTIALS_REVOKED" });
    // Its users are cut off with it.
    const device = await failure(clientsFor(inst.target, user.auth).directory.getThirdPartyReachable({}));
    expect(device).toMatchObject({ code: Code.Unauthenticated, reason: "CREDENTIALS_REVOKED" });
    const unknown = await failure(registerProviderUser(inst.target, `${token}x`, "acme", "coyote"));
    expect(unknown).toMatchObject({ code: Code.Unauthenticated, reason: "INVALID_CREDENTIALS" });
  });

  test("the registry refuses bad ids and names, duplicate ids and unknown revocations", async () => {
    const { backend } = await setup();
    for (const id of ["", "Acme", "-acme", "a".repeat(33), "acme_chat"])
      await expect(addProvider(backend.db, { id, displayName: "X" })).rejects.toMatchObject({
        code: Code.InvalidArgument,
        reason: "INVALID_PROVIDER_ID",
      });
    await expect(addProvider(backend.db, { id: "globex", displayName: "  " })).rejects.toMatchObject({
      reason: "INVALID_PROVIDER_NAME",
    });
    await expect(addProvider(backend.db, { id: "acme", displayName: "Acme again" })).rejects.toMatchObject({
      code: Code.AlreadyExists,
      reason: "PROVIDER_EXISTS",
    });
    await expect(revokeProviderById(backend.db, "nobody")).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "PROVIDER_NOT_FOUND",
    });
    const first = await revokeProviderById(backend.db, "acme");
    const again = await revokeProviderById(backend.db, "acme");
    expect(again.revokedAt).toEqual(first.revokedAt);
    expect((await backend.db.selectFrom("providers").select("id").execute()).map((r) => r.id)).toEqual([
      "acme",
    ]);
  });

  test("a provider acts only for its own users", async () => {
    const { backend, inst, token } = await setup();
    const other = await addProvider(backend.db, { id: "globex", displayName: "Globex" });
    const acme = clientsFor(inst.target, `Bearer ${token}`);
    const ours = await registerAccount(inst.target, "whatsapp");
    const globexUser = await registerProviderUser(inst.target, other.token, "globex", "hank");

    const wrongHandle = await failure(
      acme.directory.registerAccount({
        handle: { app: App.THIRD_PARTY, providerId: "globex", value: "mallory" },
        registrationId: 7,
        password: randomBytes(18).toString("base64url"),
      }),
    );
    expect(wrongHandle).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
    const wrongApp = await failure(
      acme.directory.registerAccount({
        handle: { app: App.WHATSAPP, value: "+15559990001" },
        registrationId: 7,
        password: randomBytes(18).toString("base64url"),
      }),
    );
    expect(wrongApp).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
    for (const victim of [ours, globexUser]) {
      const send = await failure(
        acme.messages.sendMessage({
          sender: { accountId: victim.accountId, deviceId: 1 },
          destinationAccountId: victim.accountId,
          messages: [],
          clientMessageId: randomUUID(),
        }),
      );
      expect(send).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
      const device = await failure(
        acme.directory.registerDevice({
          accountId: victim.accountId,
          registrationId: 9,
          password: randomBytes(18).toString("base64url"),
        }),
      );
      expect(device).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
    }
    expect(await queuedCount(backend)).toBe(0);
  });

  test("accounts of our apps are hidden from providers until they opt in", async () => {
    const { backend, inst, token } = await setup();
    const wile = await registerProviderUser(inst.target, token, "acme", "wile");
    const alice = await registerAccount(inst.target, "whatsapp");
    const aliceHandle = (
      await clientsFor(inst.target, appAuth("whatsapp")).directory.getAccount({ accountId: alice.accountId })
    ).result;
    const handle = aliceHandle.case === "found" ? aliceHandle.value.account?.handle : undefined;
    expect(handle?.app).toBe(App.WHATSAPP);
    const asWile = clientsFor(inst.target, wile.auth);
    const asAcme = clientsFor(inst.target, `Bearer ${token}`);
    const asAlice = clientsFor(inst.target, alice.auth);

    expect((await asAlice.directory.getThirdPartyReachable({})).reachable).toBe(false);
    expect((await asWile.directory.resolveHandle({ handle })).result.case).toBe("notFound");
    expect((await asAcme.directory.resolveHandle({ handle })).result.case).toBe("notFound");
    expect((await asWile.directory.getAccount({ accountId: alice.accountId })).result.case).toBe("notFound");
    expect(
      (await asWile.keys.getPreKeyBundles({ accountId: alice.accountId, deviceId: 0 })).result.case,
    ).toBe("notFound");
    const refused = await sendTo(asWile, [alice], "hello?");
    expect(refused.result.case).toBe("recipientNotFound");
    // Exactly what an unknown recipient gets.
    const unknown = await asWile.messages.sendMessage({
      destinationAccountId: randomUUID(),
      messages: [
        { deviceId: 1, registrationId: 1, type: EnvelopeType.CIPHERTEXT, content: Buffer.from("x") },
      ],
      clientMessageId: randomUUID(),
    });
    expect(unknown.result.case).toBe("recipientNotFound");
    expect(await queuedCount(backend)).toBe(0);

    // Our users can always reach provider users, and other apps are unaffected by the opt-in.
    const bob = await registerAccount(inst.target, "messenger");
    expect((await sendTo(asAlice, [wile], "hi wile")).result.case).toBe("sent");
    expect((await sendTo(clientsFor(inst.target, bob.auth), [alice], "hi alice")).result.case).toBe("sent");

    // Alice opts in (here through her gateway's app credential, as the gateways do).
    const set = await clientsFor(inst.target, appAuth("whatsapp")).directory.setThirdPartyReachable({
      accountId: alice.accountId,
      reachable: true,
    });
    expect(set.reachable).toBe(true);
    expect((await asAlice.directory.getThirdPartyReachable({})).reachable).toBe(true);
    expect((await asWile.directory.resolveHandle({ handle })).result.case).toBe("found");
    expect((await sendTo(asWile, [alice], "hello alice")).result.case).toBe("sent");

    const reader = connectDevice(inst.target, alice);
    await reader.until(() => reader.received.length === 2);
    const fromWile = reader.received.find((e) => text(e) === "hello alice");
    expect(fromWile?.sourceApp).toBe(App.THIRD_PARTY);
    expect(fromWile?.sourceProviderId).toBe("acme");
    expect(fromWile?.source?.accountId).toBe(wile.accountId);

    // And opts out again: hidden at once.
    await asAlice.directory.setThirdPartyReachable({ reachable: false });
    expect((await sendTo(asWile, [alice], "again")).result.case).toBe("recipientNotFound");
  });

  test("the opt-in cannot be changed by others and does not apply to provider accounts", async () => {
    const { inst, token } = await setup();
    const wile = await registerProviderUser(inst.target, token, "acme", "wile");
    const alice = await registerAccount(inst.target, "whatsapp");
    const asWile = clientsFor(inst.target, wile.auth);
    const foreign = await failure(
      asWile.directory.setThirdPartyReachable({ accountId: alice.accountId, reachable: true }),
    );
    expect(foreign).toMatchObject({ code: Code.PermissionDenied, reason: "NOT_YOUR_ACCOUNT" });
    const byOtherApp = await failure(
      clientsFor(inst.target, appAuth("messenger")).directory.setThirdPartyReachable({
        accountId: alice.accountId,
        reachable: true,
      }),
    );
    expect(byOtherApp).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
    const own = await failure(asWile.directory.setThirdPartyReachable({ reachable: false }));
    expect(own).toMatchObject({ code: Code.FailedPrecondition, reason: "THIRD_PARTY_ACCOUNT" });
    expect((await asWile.directory.getThirdPartyReachable({})).reachable).toBe(true);
  });

  test("in a mixed group, provider users reach only members who opted in", async () => {
    const { backend, inst, token } = await setup();
    const wile = await registerProviderUser(inst.target, token, "acme", "wile");
    const alice = await registerAccount(inst.target, "whatsapp");
    const bob = await registerAccount(inst.target, "messenger");
    const carol = await registerAccount(inst.target, "instagram");
    await clientsFor(inst.target, alice.auth).directory.setThirdPartyReachable({ reachable: true });
    const asWile = clientsFor(inst.target, wile.auth);

    // A provider user cannot add a member of ours who did not opt in: it looks unknown.
    const add = await failure(
      asWile.groups.createGroup({ memberAccountIds: [alice.accountId, bob.accountId] }),
    );
    expect(add).toMatchObject({ code: Code.NotFound, reason: "ACCOUNT_NOT_FOUND" });
    expect((await backend.db.selectFrom("groups").select("id").execute()).length).toBe(0);

    // Our user may put everyone in one group; the provider user's view omits Bob.
    const created = await clientsFor(inst.target, alice.auth).groups.createGroup({
      memberAccountIds: [wile.accountId, bob.accountId],
    });
    const groupId = created.group?.id ?? "";
    expect(created.group?.members.length).toBe(3);
    const seen = await asWile.groups.getGroup({ groupId });
    expect(seen.group?.members.map((m) => m.account?.id).sort()).toEqual(
      [alice.accountId, wile.accountId].sort(),
    );
    const addBob = await failure(asWile.groups.addGroupMembers({ groupId, accountIds: [carol.accountId] }));
    expect(addBob).toMatchObject({ code: Code.NotFound, reason: "ACCOUNT_NOT_FOUND" });

    const fromWile = await asWile.messages.sendGroupMessage({
      groupId,
      content: Buffer.from("group hello from acme"),
      clientMessageId: randomUUID(),
      // Bob is listed (say, from an older view): ignored, as he is hidden from provider users.
      expectedRecipients: [alice, bob].map((d: TestDevice) => ({
        accountId: d.accountId,
        devices: [{ deviceId: 1, registrationId: d.registrationId }],
      })),
    });
    expect(fromWile.result.case).toBe("sent");
    const fromAlice = await clientsFor(inst.target, alice.auth).messages.sendGroupMessage({
      groupId,
      content: Buffer.from("group hello from alice"),
      clientMessageId: randomUUID(),
    });
    expect(fromAlice.result.case).toBe("sent");
    const rows = await sql<{ account_id: string; source_account_id: string }>`
      SELECT account_id, source_account_id FROM queued_messages`.execute(backend.db);
    const got = rows.rows.map((r) => `${r.source_account_id}>${r.account_id}`).sort();
    expect(got).toEqual(
      [
        `${wile.accountId}>${alice.accountId}`,
        `${alice.accountId}>${wile.accountId}`,
        `${alice.accountId}>${bob.accountId}`,
      ].sort(),
    );
    const reader = connectDevice(inst.target, alice);
    await reader.until(() => reader.received.length === 1);
    expect(reader.received[0]).toMatchObject({
      groupId,
      sourceApp: App.THIRD_PARTY,
      sourceProviderId: "acme",
    });
  });
});
