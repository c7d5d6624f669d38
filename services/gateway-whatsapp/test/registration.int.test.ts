import { Code } from "@switchboard/errors";
import { createClient } from "@switchboard/grpc";
import { grpcHealthV1, grpcReflectionV1, whatsapp } from "@switchboard/proto";
import { sql } from "kysely";
import { describe, expect, onTestFinished, test } from "vitest";
import { createWaDatabase } from "../src/storage/database.js";
import {
  fetchCode,
  linkCompanion,
  newPhone,
  registerPhone,
  startStack,
  uploadDummyKeys,
  waClient,
  type Stack,
} from "./harness.js";

async function wrongCode(stack: Stack, phone: string): Promise<string> {
  const right = await fetchCode(stack, phone);
  return right === "000000" ? "000001" : "000000";
}

describe("RequestCode / VerifyCode", () => {
  test("registers a number with the code from the dev admin endpoint", async () => {
    const stack = await startStack();
    const phone = newPhone();
    const open = waClient(stack.target);

    const requested = await open.requestCode({ phoneNumber: phone });
    const code = await fetchCode(stack, phone);
    const r = await open.verifyCode({ phoneNumber: phone, code, registrationId: 42, deviceName: "phone" });

    expect(requested.expiresInSeconds).toBe(600);
    expect(code).toMatch(/^[0-9]{6}$/);
    expect(r.jid).toBe(`${phone.slice(1)}:1@s.whatsapp.net`);
    expect(r.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const me = await waClient(stack.target, r.token).lookupUser({ jid: `${phone.slice(1)}@s.whatsapp.net` });
    expect(me).toMatchObject({
      exists: true,
      accountId: r.accountId,
      devices: [{ jid: r.jid, registrationId: 42 }],
    });
  });

  test("stores codes and tokens only as digests", async () => {
    const stack = await startStack();
    const phone = newPhone();
    await waClient(stack.target).requestCode({ phoneNumber: phone });
    const code = await fetchCode(stack, phone);
    const db = createWaDatabase({ url: stack.databaseUrl, poolSize: 1 });
    onTestFinished(() => db.destroy());

    const row = await db
      .selectFrom("wa_verification_codes")
      .selectAll()
      .where("phone", "=", phone)
      .executeTakeFirstOrThrow();
    expect(Buffer.from(row.code_hash ?? []).toString("latin1")).not.toContain(code);
    const r = await waClient(stack.target).verifyCode({ phoneNumber: phone, code, registrationId: 7 });
    const tokens = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM wa_device_tokens WHERE position(convert_to(${r.token}, 'UTF8') in token_hash) > 0
    `.execute(db);
    expect(tokens.rows[0]?.n).toBe(0);
    expect(
      await db
        .selectFrom("wa_device_tokens")
        .select("device_id")
        .where("account_id", "=", r.accountId)
        .execute(),
    ).toEqual([{ device_id: 1 }]);
  });

  test("invalidates the code after five wrong attempts", async () => {
    const stack = await startStack();
    const phone = newPhone();
    const open = waClient(stack.target);
    await open.requestCode({ phoneNumber: phone });
    const wrong = await wrongCode(stack, phone);

    for (let i = 0; i < 4; i++) {
      await expect(
        open.verifyCode({ phoneNumber: phone, code: wrong, registrationId: 1 }),
      ).rejects.toMatchObject({
        code: Code.InvalidArgument,
        reason: "WRONG_CODE",
        metadata: { attemptsLeft: String(4 - i) },
      });
    }
    await expect(
      open.verifyCode({ phoneNumber: phone, code: wrong, registrationId: 1 }),
    ).rejects.toMatchObject({
      code: Code.ResourceExhausted,
      reason: "TOO_MANY_ATTEMPTS",
    });
    await expect(
      open.verifyCode({ phoneNumber: phone, code: await fetchCode(stack, phone), registrationId: 1 }),
    ).rejects.toMatchObject({ code: Code.FailedPrecondition, reason: "NO_ACTIVE_CODE" });
  });

  test("rejects an expired code", async () => {
    const stack = await startStack();
    const phone = newPhone();
    const open = waClient(stack.target);
    await open.requestCode({ phoneNumber: phone });
    stack.advanceClock(10 * 60_000 + 1);

    await expect(
      open.verifyCode({ phoneNumber: phone, code: await fetchCode(stack, phone), registrationId: 1 }),
    ).rejects.toMatchObject({ code: Code.FailedPrecondition, reason: "CODE_EXPIRED" });
  });

  test("rate-limits code requests per number", async () => {
    const stack = await startStack({ limits: { codeRequestsPerWindow: 2 } });
    const phone = newPhone();
    const open = waClient(stack.target);
    await open.requestCode({ phoneNumber: phone });
    await open.requestCode({ phoneNumber: phone });

    await expect(open.requestCode({ phoneNumber: phone })).rejects.toMatchObject({
      code: Code.ResourceExhausted,
      reason: "CODE_RATE_LIMITED",
    });
    await open.requestCode({ phoneNumber: newPhone() });
    stack.advanceClock(60 * 60_000);
    await open.requestCode({ phoneNumber: phone });
  });

  test("keeps only the latest code valid", async () => {
    const stack = await startStack();
    const phone = newPhone();
    const open = waClient(stack.target);
    await open.requestCode({ phoneNumber: phone });
    const first = await fetchCode(stack, phone);
    let second = first;
    while (second === first) {
      await open.requestCode({ phoneNumber: phone });
      second = await fetchCode(stack, phone);
    }

    await expect(
      open.verifyCode({ phoneNumber: phone, code: first, registrationId: 1 }),
    ).rejects.toMatchObject({
      reason: "WRONG_CODE",
    });
    await open.verifyCode({ phoneNumber: phone, code: second, registrationId: 1 });
  });

  test("re-registers a verified number: same account, new primary token, old tokens revoked", async () => {
    const stack = await startStack();
    const first = await registerPhone(stack);
    const open = waClient(stack.target);
    await open.requestCode({ phoneNumber: first.phone });
    const again = await open.verifyCode({
      phoneNumber: first.phone,
      code: await fetchCode(stack, first.phone),
      registrationId: 9,
    });
    expect(again.accountId).toBe(first.accountId);
    expect(again.token).not.toBe(first.token);
    const oldClient = waClient(stack.target, first.token);
    await expect(oldClient.uploadKeys({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    // The new token authenticates; the reinstalled device starts without keys.
    const newClient = waClient(stack.target, again.token);
    await expect(newClient.uploadKeys({})).rejects.toMatchObject({ reason: "KEYS_INCOMPLETE" });
  });

  test("validates phone numbers, codes and registration ids", async () => {
    const stack = await startStack();
    const open = waClient(stack.target);

    await expect(open.requestCode({ phoneNumber: "15551234567" })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      reason: "INVALID_PHONE_NUMBER",
    });
    await expect(
      open.verifyCode({ phoneNumber: newPhone(), code: "12ab56", registrationId: 1 }),
    ).rejects.toMatchObject({
      reason: "INVALID_CODE_FORMAT",
    });
    await expect(
      open.verifyCode({ phoneNumber: newPhone(), code: "123456", registrationId: 0 }),
    ).rejects.toMatchObject({
      reason: "INVALID_REGISTRATION_ID",
    });
  });

  test("answers 404 from the admin endpoint for a number without a code", async () => {
    const stack = await startStack();
    const res = await fetch(`${stack.adminUrl}/admin/codes/${encodeURIComponent(newPhone())}`);
    expect(res.status).toBe(404);
  });
});

describe("authentication", () => {
  test("rejects calls without or with an unknown token", async () => {
    const stack = await startStack();
    await expect(
      waClient(stack.target).lookupUser({ jid: "15551234567@s.whatsapp.net" }),
    ).rejects.toMatchObject({
      code: Code.Unauthenticated,
      reason: "MISSING_TOKEN",
    });
    await expect(
      waClient(stack.target, "not-a-token").lookupUser({ jid: "15551234567@s.whatsapp.net" }),
    ).rejects.toMatchObject({ code: Code.Unauthenticated, reason: "INVALID_TOKEN" });
  });
});

describe("CreateLinkCode / LinkDevice", () => {
  test("links a companion device with a one-time code", async () => {
    const stack = await startStack();
    const primary = await registerPhone(stack);
    const { code, expiresInSeconds } = await primary.client.createLinkCode({});
    const open = waClient(stack.target);

    const linked = await open.linkDevice({
      code: code.toLowerCase(),
      registrationId: 77,
      deviceName: "laptop",
    });

    expect(code).toMatch(/^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$/);
    expect(expiresInSeconds).toBe(300);
    expect(linked).toMatchObject({
      jid: `${primary.phone.slice(1)}:2@s.whatsapp.net`,
      accountId: primary.accountId,
    });
    const me = await waClient(stack.target, linked.token).lookupUser({
      jid: `${primary.phone.slice(1)}@s.whatsapp.net`,
    });
    expect(me.devices.map((d) => d.jid)).toEqual([primary.jid, linked.jid]);
    await expect(open.linkDevice({ code, registrationId: 78 })).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "LINK_CODE_NOT_FOUND",
    });
  });

  test("rejects expired link codes and link codes from companions", async () => {
    const stack = await startStack();
    const primary = await registerPhone(stack);
    const companion = await linkCompanion(stack, primary);
    const { code } = await primary.client.createLinkCode({});
    stack.advanceClock(5 * 60_000 + 1);

    await expect(waClient(stack.target).linkDevice({ code, registrationId: 5 })).rejects.toMatchObject({
      reason: "LINK_CODE_NOT_FOUND",
    });
    await expect(companion.client.createLinkCode({})).rejects.toMatchObject({
      code: Code.PermissionDenied,
      reason: "PRIMARY_DEVICE_REQUIRED",
    });
  });
});

describe("keys and lookups", () => {
  test("uploads keys and serves bundles by user and device JID", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    await uploadDummyKeys(bob);
    const bobUser = `${bob.phone.slice(1)}@s.whatsapp.net`;

    const all = await alice.client.getPreKeyBundles({ jid: bobUser });
    const one = await alice.client.getPreKeyBundles({ jid: bob.jid });

    expect(all.accountId).toBe(bob.accountId);
    expect(all.bundles).toHaveLength(1);
    expect(all.bundles[0]).toMatchObject({ jid: bob.jid, registrationId: bob.registrationId });
    expect(all.bundles[0]?.oneTimePreKey?.keyId).toBe(1);
    expect(one.bundles[0]?.oneTimePreKey).toBeUndefined();
    expect(one.bundles[0]?.kyberPreKey?.keyId).toBe(2);
    await expect(alice.client.getPreKeyBundles({ jid: "15550000001@s.whatsapp.net" })).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "USER_NOT_FOUND",
    });
  });

  test("counts keys with an empty upload", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    await uploadDummyKeys(alice);
    expect(await alice.client.uploadKeys({})).toMatchObject({ oneTimePreKeyCount: 1, kyberPreKeyCount: 1 });
  });

  test("looks up users of other apps and reports unknown ones", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    await expect(alice.client.lookupUser({ jid: "999999@messenger" })).resolves.toMatchObject({
      exists: false,
    });
    await expect(alice.client.lookupUser({ jid: "nobody@instagram" })).resolves.toMatchObject({
      exists: false,
    });
    await expect(alice.client.lookupUser({ jid: alice.jid })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      reason: "USER_JID_REQUIRED",
    });
    await expect(alice.client.lookupUser({ jid: "alice@example.com" })).rejects.toMatchObject({
      reason: "INVALID_JID",
    });
  });
});

describe("operations", () => {
  test("serves health and reflection", async () => {
    const stack = await startStack();
    const health = createClient(grpcHealthV1.Health, stack.target);
    const reflection = createClient(grpcReflectionV1.ServerReflection, stack.target);
    onTestFinished(() => {
      health.close();
      reflection.close();
    });

    const status = await health.check({ service: whatsapp.WhatsAppService.typeName });
    const stream = reflection.serverReflectionInfo();
    await stream.send({ messageRequest: { case: "listServices", value: "*" } });
    stream.end();
    const names: string[] = [];
    for await (const r of stream.responses)
      if (r.messageResponse.case === "listServicesResponse")
        names.push(...r.messageResponse.value.service.map((s) => s.name));

    expect(status.status).toBe(grpcHealthV1.HealthCheckResponse_ServingStatus.SERVING);
    expect(names).toContain("switchboard.gateway.whatsapp.v1.WhatsAppService");
  });
});
