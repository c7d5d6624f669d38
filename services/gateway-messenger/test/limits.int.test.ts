// Abuse limits end to end through the Messenger-style gateway (docs/safety.md "Abuse limits"): the
// delivery service's new-conversation, forwarding and sealed-sender limits, configured with small
// RATE_* values, answered as HTTP 429 RFC 9457 problems (reason RATE_LIMITED) with Retry-After.
import { randomBytes, randomUUID } from "node:crypto";
import { loadConfig, type AppConfig } from "@switchboard/delivery";
import { describe, expect, test } from "vitest";
import {
  api,
  fakeBody,
  openStream,
  signup,
  startStack,
  TOKENS,
  type Backend,
  type Gateway,
  type TestUser,
} from "./harness.js";

/** The delivery service's settings from environment variables, parsed as its process parses them. */
function deliveryEnv(env: Record<string, string>): Partial<AppConfig> {
  const parsed = loadConfig({ APP_TOKENS: `messenger=${TOKENS.messenger}`, ...env });
  return Object.fromEntries(Object.keys(env).map((k) => [k, parsed[k as keyof typeof parsed]]));
}

/** POST /v1/me/messages: a fake ciphertext to `to`'s primary device. */
function send(gw: Gateway, from: TestUser, to: TestUser, message: Record<string, unknown> = {}) {
  return api(gw, "POST", "/v1/me/messages", {
    token: from.token,
    body: {
      recipient: { id: to.userId },
      message: {
        mid: randomUUID(),
        ciphertexts: [
          { device_id: 1, registration_id: to.registrationId, type: "ciphertext", body: fakeBody("hi") },
        ],
        ...message,
      },
    },
  });
}

/** The open POST /v1/sealed/messages to `to`'s primary device. */
function sendSealed(gw: Gateway, to: TestUser, accessKey: Uint8Array) {
  return api(gw, "POST", "/v1/sealed/messages", {
    body: {
      recipient: { account_id: to.accountId },
      access_key: Buffer.from(accessKey).toString("base64"),
      message: {
        ciphertexts: [
          {
            device_id: 1,
            registration_id: to.registrationId,
            type: "sealed_sender",
            body: randomBytes(32).toString("base64"),
          },
        ],
      },
    },
  });
}

const setAccess = (gw: Gateway, user: TestUser, body: Record<string, unknown>) =>
  api(gw, "PUT", "/v1/me/settings/unidentified_access", { token: user.token, body });

/** A JSON response of the gateway. */
type Res = { status: number; body: Record<string, unknown>; headers: Headers };

/** The response's media type without parameters (`application/problem+json`). */
const mediaType = (r: { headers: Headers }) => r.headers.get("content-type")?.split(";")[0];

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

async function queuedFor(backend: Backend, accountId: string): Promise<number> {
  const rows = await backend.deliveryDb
    .selectFrom("queued_messages")
    .select("message_id")
    .where("account_id", "=", accountId)
    .execute();
  return rows.length;
}

/** Asserts a 429 RATE_LIMITED problem with a Retry-After of at least one second; returns the seconds. */
function expectRateLimited(r: Res): number {
  expect([r.status, mediaType(r), r.body.reason, r.body.code, r.body.type]).toEqual([
    429,
    "application/problem+json",
    "RATE_LIMITED",
    "RESOURCE_EXHAUSTED",
    "/errors/rate-limited",
  ]);
  const retryAfter = Number(r.headers.get("retry-after"));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  return retryAfter;
}

describe("abuse limits through the Messenger-style gateway", () => {
  test("refuses a new conversation over RATE_NEW_CONVERSATIONS_PER_HOUR with 429 and Retry-After; existing conversations and replies go on", async () => {
    const { backend, gateway } = await startStack({
      delivery: deliveryEnv({ RATE_NEW_CONVERSATIONS_PER_HOUR: "2" }),
    });
    const spammer = await signup(gateway);
    const [t0, t1, t2] = [await signup(gateway), await signup(gateway), await signup(gateway)];

    expect((await send(gateway, spammer, t0)).status).toBe(200);
    expect((await send(gateway, spammer, t1)).status).toBe(200);
    const refused = await send(gateway, spammer, t2);
    // One token back takes half an hour at 2 per hour.
    expect(expectRateLimited(refused)).toBeGreaterThan(60);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(1800);
    expect(await queuedFor(backend, t2.accountId)).toBe(0);

    expect((await send(gateway, spammer, t0)).status).toBe(200);
    const fan = await signup(gateway);
    expect((await send(gateway, fan, spammer)).status).toBe(200);
    expect((await send(gateway, spammer, fan)).status).toBe(200);
  });

  test("limits the chats forwarded content goes to (RATE_FORWARDED_CHATS_BURST); unforwarded sends are not limited", async () => {
    const { backend, gateway } = await startStack({
      delivery: deliveryEnv({ RATE_FORWARDED_CHATS_BURST: "2", RATE_FORWARDED_CHATS_PER_HOUR: "1" }),
    });
    const sender = await signup(gateway);
    const chats = [await signup(gateway), await signup(gateway), await signup(gateway)];
    const [c0, c1, c2] = chats as [TestUser, TestUser, TestUser];

    expect((await send(gateway, sender, c0, { forwarded: true })).status).toBe(200);
    expect((await send(gateway, sender, c1, { forwarded: true })).status).toBe(200);
    expectRateLimited(await send(gateway, sender, c2, { forwarded: true }));
    expectRateLimited(await send(gateway, sender, c0, { forwarded: true }));
    expect(await queuedFor(backend, c2.accountId)).toBe(0);
    for (const c of chats) expect((await send(gateway, sender, c, { forwarded: false })).status).toBe(200);

    // The flag reaches the recipient's WebSocket; a flag that is not a boolean is a 400 problem.
    const ws = await openStream(gateway, c0);
    await ws.until(() => ws.messages().length === 2);
    expect(ws.messages().map((m) => m.forwarded === true)).toEqual([true, false]);
    const bad = await send(gateway, sender, c0, { forwarded: "yes" });
    expect([bad.status, bad.body.reason]).toEqual([400, "INVALID_REQUEST"]);
  });

  test("sealed sends: the per-(recipient, access key) limit answers 429 RATE_LIMITED with Retry-After", async () => {
    const { backend, gateway } = await startStack({ delivery: deliveryEnv({ RATE_PAIR_PER_SECOND: "1" }) });
    const bob = await signup(gateway);
    const carol = await signup(gateway);
    const bobKey = randomBytes(16);
    const carolKey = randomBytes(16);
    expect((await setAccess(gateway, bob, { access_key: b64(bobKey) })).status).toBe(204);
    expect((await setAccess(gateway, carol, { access_key: b64(carolKey) })).status).toBe(204);

    let sent = 0;
    let refused: Res | undefined;
    while (refused === undefined && sent < 20) {
      const r = await sendSealed(gateway, bob, bobKey);
      if (r.status === 200) sent++;
      else refused = r;
    }
    expect(sent).toBeGreaterThanOrEqual(5);
    if (!refused) throw new Error("never rate limited");
    expectRateLimited(refused);
    expect(await queuedFor(backend, bob.accountId)).toBe(sent);
    expect((await sendSealed(gateway, carol, carolKey)).status).toBe(200);
  });

  test("sealed sends: rotating or disabling the access key blocks the old key at once; bad keys are clear problems", async () => {
    const { backend, gateway } = await startStack();
    const bob = await signup(gateway);
    const oldKey = randomBytes(16);
    const newKey = randomBytes(16);
    await setAccess(gateway, bob, { access_key: b64(oldKey) });
    expect((await sendSealed(gateway, bob, oldKey)).status).toBe(200);

    expect((await setAccess(gateway, bob, { access_key: b64(newKey) })).status).toBe(204);
    const stale = await sendSealed(gateway, bob, oldKey);
    expect([stale.status, stale.body.reason, mediaType(stale)]).toEqual([
      401,
      "INVALID_ACCESS_KEY",
      "application/problem+json",
    ]);
    expect((await sendSealed(gateway, bob, newKey)).status).toBe(200);

    expect((await setAccess(gateway, bob, { disabled: true })).status).toBe(204);
    const disabled = await sendSealed(gateway, bob, newKey);
    expect([disabled.status, disabled.body.reason]).toEqual([401, "INVALID_ACCESS_KEY"]);
    expect(await queuedFor(backend, bob.accountId)).toBe(2);

    const short = await setAccess(gateway, bob, { access_key: b64(randomBytes(8)) });
    expect([short.status, short.body.reason]).toEqual([400, "INVALID_ACCESS_KEY"]);
    const none = await setAccess(gateway, bob, {});
    expect([none.status, none.body.reason]).toEqual([400, "MISSING_FIELD"]);
    const malformed = await sendSealed(gateway, bob, randomBytes(3));
    expect([malformed.status, malformed.body.reason]).toEqual([401, "INVALID_ACCESS_KEY"]);
  });
});
