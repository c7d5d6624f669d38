// Abuse limits end to end through the Instagram-style gateway (docs/safety.md "Abuse limits"): the
// delivery service's new-conversation, forwarding and sealed-sender limits, configured with small
// RATE_* values, answered as HTTP 429 RFC 9457 problems (reason RATE_LIMITED) with Retry-After.
import { randomBytes, randomUUID } from "node:crypto";
import { loadConfig, type AppConfig } from "@switchboard/delivery";
import type { Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { describe, expect, it } from "vitest";
import {
  api,
  b64,
  openEvents,
  signUp,
  startStack,
  TOKENS,
  type IgUser,
  type Res,
  type Stack,
} from "./harness.js";

/** The delivery service's settings from environment variables, parsed as its process parses them. */
function deliveryEnv(env: Record<string, string>): Partial<AppConfig> {
  const parsed = loadConfig({ APP_TOKENS: `instagram=${TOKENS.instagram}`, ...env });
  return Object.fromEntries(Object.keys(env).map((k) => [k, parsed[k as keyof typeof parsed]]));
}

/** Opens (or finds) the one-to-one thread of `from` with `to`. */
async function threadOf(base: string, from: IgUser, to: IgUser): Promise<string> {
  const r = await api<{ thread_id: string }>(base, "POST", "/v1/direct/threads", {
    token: from.token,
    body: { recipients: [to.username] },
  });
  if (r.status !== 200) throw new Error(`thread failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.thread_id;
}

/** Sends an item to `to` (one ciphertext for its primary device) in the thread of `from` with `to`. */
async function sendItem(base: string, from: IgUser, to: IgUser, extra: Record<string, unknown> = {}) {
  const thread = await threadOf(base, from, to);
  return api(base, "POST", `/v1/direct/threads/${thread}/items`, {
    token: from.token,
    body: {
      client_context: randomUUID(),
      ciphertexts: [
        { device_id: 1, registration_id: to.registrationId, type: "ciphertext", body: b64("hi") },
      ],
      ...extra,
    },
  });
}

/** The open POST /v1/sealed/items to `to`'s primary device. */
const sendSealed = (base: string, to: IgUser, accessKey: Uint8Array) =>
  api(base, "POST", "/v1/sealed/items", {
    body: {
      recipient: { account_id: to.accountId },
      access_key: Buffer.from(accessKey).toString("base64"),
      ciphertexts: [
        {
          device_id: 1,
          registration_id: to.registrationId,
          type: "sealed_sender",
          body: randomBytes(32).toString("base64"),
        },
      ],
    },
  });

const setAccess = (base: string, user: IgUser, body: Record<string, unknown>) =>
  api(base, "PUT", "/v1/me/settings/unidentified_access", { token: user.token, body });

const key64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

async function queuedFor(stack: Stack, accountId: string): Promise<number> {
  const rows = await (stack.db as unknown as Kysely<Database>)
    .selectFrom("queued_messages")
    .select("message_id")
    .where("account_id", "=", accountId)
    .execute();
  return rows.length;
}

/** Asserts a 429 RATE_LIMITED problem with a Retry-After of at least one second; returns the seconds. */
function expectRateLimited(r: Res): number {
  expect([
    r.status,
    r.headers.get("content-type")?.split(";")[0],
    r.body.reason,
    r.body.code,
    r.body.type,
  ]).toEqual([429, "application/problem+json", "RATE_LIMITED", "RESOURCE_EXHAUSTED", "/errors/rate-limited"]);
  const retryAfter = Number(r.headers.get("retry-after"));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  return retryAfter;
}

describe("abuse limits through the Instagram-style gateway", () => {
  it("refuses a new conversation over RATE_NEW_CONVERSATIONS_PER_HOUR with 429 and Retry-After; existing conversations and replies go on", async () => {
    const stack = await startStack({ delivery: deliveryEnv({ RATE_NEW_CONVERSATIONS_PER_HOUR: "2" }) });
    const base = stack.gateway.url;
    const spammer = await signUp(base);
    const [t0, t1, t2] = [await signUp(base), await signUp(base), await signUp(base)];

    expect((await sendItem(base, spammer, t0)).status).toBe(200);
    expect((await sendItem(base, spammer, t1)).status).toBe(200);
    const refused = await sendItem(base, spammer, t2);
    // One token back takes half an hour at 2 per hour.
    expect(expectRateLimited(refused)).toBeGreaterThan(60);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(1800);
    expect(await queuedFor(stack, t2.accountId)).toBe(0);

    expect((await sendItem(base, spammer, t0)).status).toBe(200);
    const fan = await signUp(base);
    expect((await sendItem(base, fan, spammer)).status).toBe(200);
    expect((await sendItem(base, spammer, fan)).status).toBe(200);
  });

  it("limits the chats forwarded items go to (RATE_FORWARDED_CHATS_BURST); unforwarded items are not limited", async () => {
    const stack = await startStack({
      delivery: deliveryEnv({ RATE_FORWARDED_CHATS_BURST: "2", RATE_FORWARDED_CHATS_PER_HOUR: "1" }),
    });
    const base = stack.gateway.url;
    const sender = await signUp(base);
    const chats = [await signUp(base), await signUp(base), await signUp(base)];
    const [c0, c1, c2] = chats as [IgUser, IgUser, IgUser];
    // c0 accepts the sender, so its items stream live rather than wait in the request folder.
    await threadOf(base, c0, sender);

    expect((await sendItem(base, sender, c0, { forwarded: true })).status).toBe(200);
    expect((await sendItem(base, sender, c1, { forwarded: true })).status).toBe(200);
    expectRateLimited(await sendItem(base, sender, c2, { forwarded: true }));
    expectRateLimited(await sendItem(base, sender, c0, { forwarded: true }));
    expect(await queuedFor(stack, c2.accountId)).toBe(0);
    for (const c of chats) expect((await sendItem(base, sender, c, { forwarded: false })).status).toBe(200);

    // The flag reaches the recipient's item; a flag that is not a boolean is a 400 problem.
    const events = await openEvents(base, c0.token);
    await events.until(() => events.items().length === 2);
    expect(events.items().map((e) => e.data.forwarded)).toEqual([true, false]);
    const bad = await sendItem(base, sender, c0, { forwarded: "yes" });
    expect([bad.status, bad.body.reason]).toEqual([400, "INVALID_ARGUMENT"]);
  });

  it("sealed items: the per-(recipient, access key) limit answers 429 RATE_LIMITED with Retry-After", async () => {
    const stack = await startStack({ delivery: deliveryEnv({ RATE_PAIR_PER_SECOND: "1" }) });
    const base = stack.gateway.url;
    const bob = await signUp(base);
    const carol = await signUp(base);
    const bobKey = randomBytes(16);
    const carolKey = randomBytes(16);
    expect((await setAccess(base, bob, { access_key: key64(bobKey) })).status).toBe(204);
    expect((await setAccess(base, carol, { access_key: key64(carolKey) })).status).toBe(204);

    let sent = 0;
    let refused: Res | undefined;
    while (refused === undefined && sent < 20) {
      const r = await sendSealed(base, bob, bobKey);
      if (r.status === 200) sent++;
      else refused = r;
    }
    expect(sent).toBeGreaterThanOrEqual(5);
    if (!refused) throw new Error("never rate limited");
    expectRateLimited(refused);
    expect(await queuedFor(stack, bob.accountId)).toBe(sent);
    expect((await sendSealed(base, carol, carolKey)).status).toBe(200);
  });

  it("sealed items: rotating or disabling the access key blocks the old key at once; bad keys are clear problems", async () => {
    const stack = await startStack();
    const base = stack.gateway.url;
    const bob = await signUp(base);
    const oldKey = randomBytes(16);
    const newKey = randomBytes(16);
    await setAccess(base, bob, { access_key: key64(oldKey) });
    expect((await sendSealed(base, bob, oldKey)).status).toBe(200);

    expect((await setAccess(base, bob, { access_key: key64(newKey) })).status).toBe(204);
    const stale = await sendSealed(base, bob, oldKey);
    expect([stale.status, stale.body.reason, stale.headers.get("content-type")?.split(";")[0]]).toEqual([
      401,
      "INVALID_ACCESS_KEY",
      "application/problem+json",
    ]);
    expect((await sendSealed(base, bob, newKey)).status).toBe(200);

    expect((await setAccess(base, bob, { disabled: true })).status).toBe(204);
    const disabled = await sendSealed(base, bob, newKey);
    expect([disabled.status, disabled.body.reason]).toEqual([401, "INVALID_ACCESS_KEY"]);
    expect(await queuedFor(stack, bob.accountId)).toBe(2);

    const short = await setAccess(base, bob, { access_key: key64(randomBytes(8)) });
    expect([short.status, short.body.code]).toEqual([400, "INVALID_ARGUMENT"]);
    const malformed = await sendSealed(base, bob, randomBytes(3));
    expect([malformed.status, malformed.body.code]).toEqual([400, "INVALID_ARGUMENT"]);
  });
});
