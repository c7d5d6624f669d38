import { createClient } from "@switchboard/grpc";
import { App, DirectoryService } from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { addDevice, api, randomPassword, signup, startStack, TOKENS } from "./harness.js";

const b64 = (n: number, fill = 1) => Buffer.alloc(n, fill).toString("base64");
const signed = (keyId: number, size = 33) => ({
  key_id: keyId,
  public_key: b64(size, keyId),
  signature: b64(64),
});

/** Registers a WhatsApp-style user directly with the delivery service (as the WhatsApp gateway would). */
async function registerWhatsAppUser(target: string, phone: string) {
  const directory = createClient(DirectoryService, target, {
    metadata: () => ({ authorization: `Bearer ${TOKENS.whatsapp}` }),
  });
  onTestFinished(() => directory.close());
  const r = await directory.registerAccount({
    handle: { app: App.WHATSAPP, value: phone },
    registrationId: 77,
    password: randomPassword(),
  });
  return r.account?.id ?? "";
}

describe("accounts", () => {
  test("signup assigns a numeric user id and returns a working access token", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    expect(a.userId).toMatch(/^[1-9][0-9]{5,}$/);
    expect(BigInt(b.userId)).toBeGreaterThan(BigInt(a.userId));
    expect(a.deviceId).toBe(1);
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const me = await api(gateway, "GET", "/v1/me", { token: a.token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({
      user: { account_id: a.accountId, app: "messenger", id: a.userId },
      device_id: 1,
      devices: [{ device_id: 1, registration_id: a.registrationId, name: "test" }],
    });
  });

  test("stores tokens only as SHA-256 digests", async () => {
    const { gateway, backend } = await startStack();
    const a = await signup(gateway);
    const rows = await backend.gatewayDb.selectFrom("ms_tokens").selectAll().execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]?.token_sha256.byteLength).toBe(32);
    expect(JSON.stringify(rows)).not.toContain(a.token);
  });

  test("a device's token adds a device of the same user, with its own token", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const a2 = await addDevice(gateway, a);
    expect(a2.deviceId).toBe(2);
    expect(a2.token).not.toBe(a.token);
    const me = await api<{ device_id: number; devices: unknown[] }>(gateway, "GET", "/v1/me", {
      token: a2.token,
    });
    expect(me.body.device_id).toBe(2);
    expect(me.body.devices).toHaveLength(2);
  });

  test("removing a device revokes its token; only the primary removes others", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const a2 = await addDevice(gateway, a);
    const a3 = await addDevice(gateway, a);
    const denied = await api(gateway, "DELETE", `/v1/me/devices/${a3.deviceId}`, { token: a2.token });
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({ reason: "NOT_PRIMARY_DEVICE" });
    expect((await api(gateway, "DELETE", `/v1/me/devices/${a2.deviceId}`, { token: a.token })).status).toBe(
      204,
    );
    const revoked = await api(gateway, "GET", "/v1/me", { token: a2.token });
    expect(revoked.status).toBe(401);
    expect(revoked.body).toMatchObject({ reason: "INVALID_TOKEN" });
    const primary = await api(gateway, "DELETE", "/v1/me/devices/1", { token: a.token });
    expect(primary.status).toBe(400);
    expect(primary.body).toMatchObject({ reason: "PRIMARY_DEVICE", code: "FAILED_PRECONDITION" });
  });
});

describe("problem responses", () => {
  test("a missing or unknown token is a 401 problem", async () => {
    const { gateway } = await startStack();
    const missing = await api(gateway, "GET", "/v1/me");
    expect(missing.status).toBe(401);
    expect(missing.headers.get("content-type")).toContain("application/problem+json");
    expect(missing.headers.get("www-authenticate")).toContain("Bearer");
    expect(missing.body).toMatchObject({
      type: "/errors/missing-token",
      title: "Unauthenticated",
      status: 401,
      reason: "MISSING_TOKEN",
      code: "UNAUTHENTICATED",
      requestId: expect.stringMatching(/^req-/) as string,
    });
    const unknown = await api(gateway, "GET", "/v1/me", { token: "A".repeat(43) });
    expect(unknown.body).toMatchObject({ status: 401, reason: "INVALID_TOKEN" });
  });

  test("a schema failure is INVALID_ARGUMENT with an errors list", async () => {
    const { gateway } = await startStack();
    const r = await api<{ errors: unknown[] }>(gateway, "POST", "/v1/signup", {
      body: { registration_id: 0, extra: true },
    });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ reason: "INVALID_REQUEST", code: "INVALID_ARGUMENT", status: 400 });
    expect(r.body.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ location: "body", pointer: "/registration_id" }),
        expect.objectContaining({ location: "body", keyword: "additionalProperties", property: "extra" }),
      ]),
    );
  });

  test("malformed JSON, oversized bodies and unknown routes are problems too", async () => {
    const { gateway } = await startStack();
    const badJson = await fetch(`${gateway.url}/v1/signup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{",
    });
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ reason: "INVALID_JSON" });
    const big = await api(gateway, "POST", "/v1/signup", {
      body: { registration_id: 1, device_name: "x".repeat(2 << 20) },
    });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({ reason: "BODY_TOO_LARGE" });
    const nowhere = await api(gateway, "GET", "/v1/nowhere");
    expect(nowhere.status).toBe(404);
    expect(nowhere.body).toMatchObject({ reason: "ROUTE_NOT_FOUND" });
  });

  test("delivery errors keep their code and reason", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const r = await api(gateway, "PUT", "/v1/me/keys", { token: a.token, body: { identity_key: b64(5) } });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ reason: "INVALID_KEY", code: "INVALID_ARGUMENT" });
  });
});

describe("keys and users", () => {
  test("uploads keys, counts them and hands out each one-time key once", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const upload = await api(gateway, "PUT", "/v1/me/keys", {
      token: a.token,
      body: {
        identity_key: b64(33, 9),
        signed_pre_key: signed(1),
        one_time_pre_keys: [
          { key_id: 11, public_key: b64(33, 11) },
          { key_id: 12, public_key: b64(33, 12) },
        ],
        kyber_pre_keys: [signed(21, 1569)],
        last_resort_kyber_pre_key: signed(30, 1569),
      },
    });
    expect(upload).toMatchObject({
      status: 200,
      body: { one_time_pre_key_count: 2, kyber_pre_key_count: 1 },
    });

    const first = await api<{ bundles: { one_time_pre_key?: { key_id: number } }[] }>(
      gateway,
      "GET",
      `/v1/users/${a.userId}/keys`,
      { token: b.token },
    );
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      user: { account_id: a.accountId, app: "messenger", id: a.userId },
      bundles: [
        {
          device_id: 1,
          registration_id: a.registrationId,
          identity_key: b64(33, 9),
          signed_pre_key: signed(1),
          one_time_pre_key: { key_id: 11 },
          kyber_pre_key: { key_id: 21 },
          kyber_pre_key_is_last_resort: false,
        },
      ],
    });
    const second = await api(gateway, "GET", `/v1/users/${a.accountId}/keys?device_id=1`, { token: b.token });
    expect(second.body).toMatchObject({
      user: { id: a.userId },
      bundles: [
        {
          one_time_pre_key: { key_id: 12 },
          kyber_pre_key: { key_id: 30 },
          kyber_pre_key_is_last_resort: true,
        },
      ],
    });
    const count = await api(gateway, "GET", "/v1/me/keys/count", { token: a.token });
    expect(count.body).toEqual({ one_time_pre_key_count: 0, kyber_pre_key_count: 0 });
    const missing = await api(gateway, "GET", "/v1/users/999999999999/keys", { token: b.token });
    expect(missing).toMatchObject({ status: 404, body: { reason: "USER_NOT_FOUND" } });
  });

  test("looks up users of any app in the Messenger-style idiom", async () => {
    const { gateway, delivery } = await startStack();
    const a = await signup(gateway);
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const waAccount = await registerWhatsAppUser(delivery.target, phone);
    const byPhone = await api(gateway, "GET", `/v1/users/whatsapp:${encodeURIComponent(phone)}`, {
      token: a.token,
    });
    expect(byPhone.status).toBe(200);
    expect(byPhone.body).toMatchObject({
      user: { account_id: waAccount, app: "whatsapp", phone },
      devices: [{ device_id: 1, registration_id: 77 }],
    });
    const byId = await api(gateway, "GET", `/v1/users/${waAccount}`, { token: a.token });
    expect(byId.body).toMatchObject({ user: { app: "whatsapp", phone } });
    const self = await api(gateway, "GET", `/v1/users/${a.userId}`, { token: a.token });
    expect(self.body).toMatchObject({ user: { account_id: a.accountId, id: a.userId } });
    const unknown = await api(gateway, "GET", "/v1/users/instagram:nobody.here", { token: a.token });
    expect(unknown).toMatchObject({ status: 404, body: { reason: "USER_NOT_FOUND" } });
    const bad = await api(gateway, "GET", "/v1/users/not-a-ref", { token: a.token });
    expect(bad).toMatchObject({ status: 400, body: { reason: "INVALID_RECIPIENT" } });
  });
});

describe("openapi", () => {
  test("publishes an OpenAPI 3.1 document generated from the route schemas", async () => {
    const { gateway } = await startStack();
    const r = await api<{
      openapi: string;
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
    }>(gateway, "GET", "/openapi.json");
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe("3.1.0");
    for (const path of [
      "/v1/signup",
      "/v1/devices",
      "/v1/me",
      "/v1/me/keys",
      "/v1/me/keys/count",
      "/v1/users/{user}",
      "/v1/users/{user}/keys",
      "/v1/me/messages",
      "/v1/me/acks",
      "/v1/groups",
      "/v1/groups/{id}",
      "/v1/groups/{id}/members",
      "/v1/groups/{id}/members/{user}",
      "/v1/groups/{id}/messages",
      "/v1/stream",
    ]) {
      expect(r.body.paths, path).toHaveProperty([path]);
    }
    expect(Object.keys(r.body.components.schemas)).toEqual(
      expect.arrayContaining([
        "User",
        "Recipient",
        "Problem",
        "Group",
        "StreamMessageEvent",
        "StreamClientFrame",
      ]),
    );
    expect(r.body.components.securitySchemes).toHaveProperty("bearerAuth");
    expect(r.body.paths["/v1/me/messages"]?.post?.responses).toHaveProperty("409");
    expect(JSON.stringify(r.body)).not.toContain("def-");
  });
});
