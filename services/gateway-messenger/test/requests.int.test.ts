import { randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import {
  api,
  fakeBody,
  openStream,
  signup,
  startStack,
  textOf,
  type Gateway,
  type TestUser,
} from "./harness.js";

function send(gw: Gateway, from: TestUser, to: TestUser, text: string) {
  return api<Record<string, unknown>>(gw, "POST", "/v1/me/messages", {
    token: from.token,
    body: {
      recipient: { id: to.userId },
      message: {
        mid: randomUUID(),
        ciphertexts: [
          { device_id: 1, registration_id: to.registrationId, type: "ciphertext", body: fakeBody(text) },
        ],
      },
    },
  });
}

async function signupMinor(gw: Gateway): Promise<TestUser> {
  const r = await api<{
    user: { account_id: string; id: string };
    device: { device_id: number; registration_id: number };
    access_token: string;
  }>(gw, "POST", "/v1/signup", { body: { registration_id: 77, minor: true } });
  expect(r.status).toBe(201);
  return {
    userId: r.body.user.id,
    accountId: r.body.user.account_id,
    deviceId: r.body.device.device_id,
    registrationId: r.body.device.registration_id,
    token: r.body.access_token,
  };
}

describe("message requests (Messenger-style)", () => {
  test("strangers' messages arrive marked; with the hold policy they wait in /v1/me/requests until accepted", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const bStream = await openStream(gateway, b);
    expect((await send(gateway, a, b, "marked")).status).toBe(200);
    await bStream.until(() => bStream.messages().length === 1);
    expect(bStream.messages()[0]).toMatchObject({ message_request: true });

    const c = await signup(gateway);
    const policy = await api(gateway, "PUT", "/v1/me/settings/requests_policy", {
      token: b.token,
      body: { policy: "hold" },
    });
    expect(policy).toMatchObject({ status: 200, body: { policy: "hold" } });
    expect((await send(gateway, c, b, "held 1")).status).toBe(200);
    expect((await send(gateway, c, b, "held 2")).status).toBe(200);
    const list = await api<{ requests: Array<Record<string, unknown>> }>(gateway, "GET", "/v1/me/requests", {
      token: b.token,
    });
    expect(list.status).toBe(200);
    expect(list.body.requests).toHaveLength(1);
    expect(list.body.requests[0]).toMatchObject({
      sender: { account_id: c.accountId, app: "messenger", id: c.userId },
      message_count: 2,
    });
    const previews = list.body.requests[0]?.messages as Array<{ body: string; message_request: boolean }>;
    expect(previews.map((m) => textOf(m))).toEqual(["held 1", "held 2"]);
    expect(bStream.messages()).toHaveLength(1);

    const accepted = await api(gateway, "POST", `/v1/me/requests/${c.userId}/accept`, { token: b.token });
    expect(accepted).toMatchObject({ status: 200, body: { released: 2 } });
    await bStream.until(() => bStream.messages().length === 3);
    expect(
      bStream
        .messages()
        .slice(1)
        .map((m) => textOf(m)),
    ).toEqual(["held 1", "held 2"]);

    const bad = await api(gateway, "PUT", "/v1/me/settings/requests_policy", {
      token: b.token,
      body: { policy: "sometimes" },
    });
    expect(bad.status).toBe(400);
  });

  test("decline and block through the API; a blocked sender still gets 200", async () => {
    const { gateway, backend } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    await api(gateway, "PUT", "/v1/me/settings/requests_policy", {
      token: b.token,
      body: { policy: "hold" },
    });
    await send(gateway, a, b, "one");
    const declined = await api(gateway, "POST", `/v1/me/requests/${a.userId}/decline`, { token: b.token });
    expect(declined).toMatchObject({ status: 200, body: { deleted: 1 } });
    expect((await api(gateway, "PUT", `/v1/me/blocks/${a.userId}`, { token: b.token })).status).toBe(204);
    const after = await send(gateway, a, b, "two");
    expect(after.status).toBe(200);
    const list = await api<{ requests: unknown[] }>(gateway, "GET", "/v1/me/requests", { token: b.token });
    expect(list.body.requests).toHaveLength(0);
    expect((await api(gateway, "DELETE", `/v1/me/blocks/${a.userId}`, { token: b.token })).status).toBe(204);
    await send(gateway, a, b, "three");
    const again = await api<{ requests: unknown[] }>(gateway, "GET", "/v1/me/requests", { token: b.token });
    expect(again.body.requests).toHaveLength(1);
    const unknown = await api(gateway, "PUT", "/v1/me/blocks/999999999", { token: b.token });
    expect(unknown.status).toBe(404);
    expect(backend).toBeDefined();
  });

  test("a minor signed up with the age signal gets nothing from adult strangers; the adult sees 200", async () => {
    const { gateway } = await startStack();
    const adult = await signup(gateway);
    const minor = await signupMinor(gateway);
    const stream = await openStream(gateway, minor);
    await stream.until(() => stream.events.some((e) => e.type === "queue_empty"));
    const sent = await send(gateway, adult, minor, "hello");
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({ recipient_id: minor.accountId, duplicate: false });
    const list = await api<{ requests: unknown[] }>(gateway, "GET", "/v1/me/requests", {
      token: minor.token,
    });
    expect(list.body.requests).toHaveLength(0);
    // The minor writes first: the adult's reply arrives.
    await send(gateway, minor, adult, "hi");
    await send(gateway, adult, minor, "reply");
    await stream.until(() => stream.messages().length === 1);
    expect(textOf(stream.messages()[0] ?? {})).toBe("reply");
    // A group invitation from another adult stranger does not add the minor.
    const stranger = await signup(gateway);
    const g = await api<{ members: Array<{ user: { account_id: string } }> }>(gateway, "POST", "/v1/groups", {
      token: stranger.token,
      body: { members: [{ id: minor.userId }, { id: adult.userId }] },
    });
    expect(g.status).toBe(201);
    expect(g.body.members.map((m) => m.user.account_id).sort()).toEqual(
      [stranger.accountId, adult.accountId].sort(),
    );
  });
});
