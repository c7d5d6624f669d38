import { randomUUID } from "node:crypto";
import { createDeliveryLink } from "@switchboard/delivery-link";
import { App } from "@switchboard/proto";
import { describe, expect, it, onTestFinished } from "vitest";
import { api, signUp, startStack, testLog, TOKENS } from "./harness.js";

describe("gateway-instagram HTTP API", () => {
  it("signs up users and renders every error as an RFC 9457 problem", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url, `Ada.L_${randomUUID().slice(0, 4)}`);
    expect(ada.token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const me = await api<{ user: { ref: string; app: string; devices: unknown[] }; device_id: number }>(
      gateway.url,
      "GET",
      "/v1/me",
      { token: ada.token },
    );
    expect(me.status).toBe(200);
    expect(me.body.user).toMatchObject({ ref: ada.username.toLowerCase(), app: "instagram" });
    expect(me.body.device_id).toBe(1);

    const taken = await api(gateway.url, "POST", "/v1/accounts", {
      body: { username: ada.username.toUpperCase(), registration_id: 7 },
    });
    expect(taken.status).toBe(409);
    expect(taken.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(taken.body).toMatchObject({ status: 409, reason: "HANDLE_TAKEN", type: "/errors/handle-taken" });
    expect(taken.body.requestId).toMatch(/^req-/);

    const invalid = await api<{ reason: string; errors: { path: string }[] }>(
      gateway.url,
      "POST",
      "/v1/accounts",
      {
        body: { username: "no spaces allowed", registration_id: 0 },
      },
    );
    expect(invalid.status).toBe(400);
    expect(invalid.body.reason).toBe("INVALID_ARGUMENT");
    expect(invalid.body.errors.map((e) => e.path).sort()).toEqual(["body/registration_id", "body/username"]);

    const noToken = await api(gateway.url, "GET", "/v1/me");
    expect([noToken.status, noToken.body.reason]).toEqual([401, "MISSING_TOKEN"]);
    const badToken = await api(gateway.url, "GET", "/v1/me", { token: "x".repeat(43) });
    expect([badToken.status, badToken.body.reason]).toEqual([401, "INVALID_TOKEN"]);
    const noRoute = await api(gateway.url, "GET", "/v2/nothing");
    expect([noRoute.status, noRoute.body.reason]).toEqual([404, "ROUTE_NOT_FOUND"]);
  });

  it("publishes an OpenAPI document generated from the route schemas", async () => {
    const { gateway } = await startStack();
    const r = await api<{
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    }>(gateway.url, "GET", "/openapi.json");
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe("3.1.0");
    expect(Object.keys(r.body.paths)).toEqual(
      expect.arrayContaining([
        "/v1/accounts",
        "/v1/devices",
        "/v1/me/keys",
        "/v1/users/{ref}/keys",
        "/v1/direct/threads",
        "/v1/direct/threads/{thread_id}/items",
        "/v1/direct/inbox",
        "/v1/direct/pending",
        "/v1/direct/pending/{thread_id}/accept",
        "/v1/direct/pending/{thread_id}/decline",
        "/v1/direct/events",
        "/v1/direct/ack",
      ]),
    );
    expect(Object.keys(r.body.components.schemas)).toEqual(
      expect.arrayContaining(["Problem", "User", "Thread", "ThreadItem"]),
    );
    expect(JSON.stringify(r.body.paths["/v1/direct/events"])).toContain("text/event-stream");
  });

  it("resolves users of every app by ref", async () => {
    const { gateway, deliveryTarget } = await startStack();
    const ada = await signUp(gateway.url);
    const wa = createDeliveryLink({ target: deliveryTarget, appToken: TOKENS.whatsapp, log: testLog });
    onTestFinished(() => wa.close());
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const reg = await wa.directory.registerAccount({
      handle: { app: App.WHATSAPP, value: phone },
      registrationId: 42,
      password: "a-long-enough-device-secret",
    });

    const byPhone = await api(gateway.url, "GET", `/v1/users/whatsapp:${phone}`, { token: ada.token });
    expect(byPhone.status).toBe(200);
    expect(byPhone.body).toMatchObject({
      account_id: reg.account?.id,
      ref: `whatsapp:${phone}`,
      app: "whatsapp",
    });
    const byId = await api(gateway.url, "GET", `/v1/users/${reg.account?.id}`, { token: ada.token });
    expect(byId.body).toMatchObject({
      ref: `whatsapp:${phone}`,
      devices: [{ device_id: 1, registration_id: 42 }],
    });
    const byName = await api(gateway.url, "GET", `/v1/users/${ada.username.toUpperCase()}`, {
      token: ada.token,
    });
    expect(byName.body).toMatchObject({ account_id: ada.accountId, ref: ada.username });

    const unknown = await api(gateway.url, "GET", "/v1/users/messenger:999999999", { token: ada.token });
    expect([unknown.status, unknown.body.reason]).toEqual([404, "USER_NOT_FOUND"]);
    const malformed = await api(gateway.url, "GET", "/v1/users/whatsapp:12", { token: ada.token });
    expect([malformed.status, malformed.body.reason]).toEqual([400, "INVALID_USER_REF"]);
  });

  it("adds and removes devices, and signs devices in with their secret", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const added = await api<{ device: { device_id: number }; access_token: string }>(
      gateway.url,
      "POST",
      "/v1/devices",
      {
        token: ada.token,
        body: { registration_id: 99, password: "laptop-secret-0123456789", device_name: "laptop" },
      },
    );
    expect(added.status).toBe(201);
    expect(added.body.device.device_id).toBe(2);
    const laptop = added.body.access_token;
    expect((await api(gateway.url, "GET", "/v1/me", { token: laptop })).body.device_id).toBe(2);

    const notPrimary = await api(gateway.url, "POST", "/v1/devices", {
      token: laptop,
      body: { registration_id: 5 },
    });
    expect([notPrimary.status, notPrimary.body.reason]).toEqual([403, "NOT_PRIMARY_DEVICE"]);

    const signIn = await api<{ access_token: string }>(gateway.url, "POST", "/v1/auth/token", {
      body: { username: ada.username, device_id: 2, password: "laptop-secret-0123456789" },
    });
    expect(signIn.status).toBe(200);
    expect(
      (await api(gateway.url, "GET", "/v1/me", { token: signIn.body.access_token })).body.device_id,
    ).toBe(2);
    const wrong = await api(gateway.url, "POST", "/v1/auth/token", {
      body: { account_id: ada.accountId, device_id: 2, password: "not-the-secret-at-all" },
    });
    expect([wrong.status, wrong.body.reason]).toEqual([401, "INVALID_CREDENTIALS"]);

    const removed = await api(gateway.url, "DELETE", "/v1/devices/2", { token: ada.token });
    expect(removed.status).toBe(204);
    const revoked = await api(gateway.url, "GET", "/v1/me", { token: signIn.body.access_token });
    expect([revoked.status, revoked.body.reason]).toEqual([401, "INVALID_TOKEN"]);
    const primary = await api(gateway.url, "DELETE", "/v1/devices/1", { token: ada.token });
    expect([primary.status, primary.body.reason]).toEqual([400, "PRIMARY_DEVICE"]);
  });

  it("uploads keys and hands out pre-key bundles by ref", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    const key = (n: number, len: number) => Buffer.alloc(len, n).toString("base64");
    const signed = (id: number, len: number) => ({
      key_id: id,
      public_key: key(id, len),
      signature: key(9, 64),
    });
    const up = await api(gateway.url, "PUT", "/v1/me/keys", {
      token: bob.token,
      body: {
        identity_key: key(5, 33),
        signed_pre_key: signed(1, 33),
        one_time_pre_keys: [{ key_id: 11, public_key: key(11, 33) }],
        kyber_pre_keys: [signed(21, 1569)],
        last_resort_kyber_pre_key: signed(22, 1569),
      },
    });
    expect(up.body).toEqual({ one_time_pre_key_count: 1, kyber_pre_key_count: 1 });

    const first = await api<{ app: string; devices: Record<string, unknown>[] }>(
      gateway.url,
      "GET",
      `/v1/users/${bob.username}/keys`,
      { token: ada.token },
    );
    expect(first.body.app).toBe("instagram");
    expect(first.body.devices[0]).toMatchObject({
      device_id: 1,
      registration_id: bob.registrationId,
      identity_key: key(5, 33),
      one_time_pre_key: { key_id: 11 },
      kyber_pre_key: { key_id: 21 },
      kyber_pre_key_is_last_resort: false,
    });
    const second = await api<{ devices: Record<string, unknown>[] }>(
      gateway.url,
      "GET",
      `/v1/users/${bob.accountId}/keys?device_id=1`,
      { token: ada.token },
    );
    expect(second.body.devices[0]).toMatchObject({
      kyber_pre_key: { key_id: 22 },
      kyber_pre_key_is_last_resort: true,
    });
    expect(second.body.devices[0]?.one_time_pre_key).toBeUndefined();
    expect((await api(gateway.url, "GET", "/v1/me/keys/count", { token: bob.token })).body).toEqual({
      one_time_pre_key_count: 0,
      kyber_pre_key_count: 0,
    });
  });
});
