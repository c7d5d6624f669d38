// Abuse limits end to end through the WhatsApp-style gateway (docs/safety.md "Abuse limits"): the
// delivery service's new-conversation, forwarding and sealed-sender limits, configured with small
// RATE_* values, answered on the native API — a ChatError frame RESOURCE_EXHAUSTED RATE_LIMITED
// with retry_after_ms on the Chat stream, a gRPC status with RetryInfo on SendSealed.
import { randomBytes } from "node:crypto";
import { loadConfig, type AppConfig } from "@switchboard/delivery";
import { Code, isAppError, type AppError } from "@switchboard/errors";
import { whatsapp } from "@switchboard/proto";
import { createDatabase } from "@switchboard/storage";
import { describe, expect, test } from "vitest";
import {
  openChat,
  registerPhone,
  startStack,
  textTo,
  TOKENS,
  userJid,
  waClient,
  type Stack,
  type WaDevice,
} from "./harness.js";

const { SendAckStatus, MessageKind } = whatsapp;

/** The delivery service's settings from environment variables, parsed as its process parses them. */
function deliveryEnv(env: Record<string, string>): Partial<AppConfig> {
  const parsed = loadConfig({ APP_TOKENS: `whatsapp=${TOKENS.whatsapp}`, ...env });
  return Object.fromEntries(Object.keys(env).map((k) => [k, parsed[k as keyof typeof parsed]]));
}

/** How a sender addresses `recipient` (its only device is the primary). */
const to = (recipient: WaDevice) => ({
  jid: userJid(recipient.jid),
  devices: [{ jid: recipient.jid, registrationId: recipient.registrationId }],
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

/** Rows queued for an account at the delivery service. */
async function queuedFor(stack: Stack, accountId: string): Promise<number> {
  const db = createDatabase({ url: stack.databaseUrl, poolSize: 1 });
  try {
    const rows = await db
      .selectFrom("queued_messages")
      .select("message_id")
      .where("account_id", "=", accountId)
      .execute();
    return rows.length;
  } finally {
    await db.destroy();
  }
}

/** A Chat stream that sends one frame at a time and returns its SendAck or ChatError. */
async function chatOf(device: WaDevice) {
  const chat = openChat(device);
  await chat.until(() => chat.drained() === 1);
  return async (frame: Parameters<typeof chat.send>[0]) => {
    await chat.send(frame);
    const id = frame.id ?? "";
    await chat.until(() => [...chat.acks(), ...chat.errors()].some((f) => f.id === id));
    const ack = chat.acks().find((a) => a.id === id);
    return ack ? { ack } : { error: chat.errors().find((e) => e.id === id) };
  };
}

const mid = () => `m-${randomBytes(6).toString("hex")}`;

describe("abuse limits through the WhatsApp-style gateway", () => {
  test("refuses a new conversation over RATE_NEW_CONVERSATIONS_PER_HOUR with RATE_LIMITED and retry_after_ms; existing conversations and replies go on", async () => {
    const stack = await startStack({ delivery: deliveryEnv({ RATE_NEW_CONVERSATIONS_PER_HOUR: "2" }) });
    const spammer = await registerPhone(stack);
    const targets = [await registerPhone(stack), await registerPhone(stack), await registerPhone(stack)];
    const [t0, t1, t2] = targets as [WaDevice, WaDevice, WaDevice];
    const send = await chatOf(spammer);

    expect((await send(textTo(to(t0), "a", mid()))).ack?.status).toBe(SendAckStatus.OK);
    expect((await send(textTo(to(t1), "b", mid()))).ack?.status).toBe(SendAckStatus.OK);
    const refused = await send(textTo(to(t2), "c", "m-third"));
    expect(refused.error).toMatchObject({
      id: "m-third",
      code: Code.ResourceExhausted,
      reason: "RATE_LIMITED",
    });
    // About an hour's refill of one token (2 per hour), in milliseconds.
    expect(refused.error?.retryAfterMs).toBeGreaterThan(60_000n);
    expect(refused.error?.retryAfterMs).toBeLessThanOrEqual(1_800_000n);
    expect(await queuedFor(stack, t2.accountId)).toBe(0);

    // A conversation already started is not new.
    expect((await send(textTo(to(t0), "a2", mid()))).ack?.status).toBe(SendAckStatus.OK);
    // Nor is a reply to someone who wrote first.
    const fan = await registerPhone(stack);
    const fanSend = await chatOf(fan);
    expect((await fanSend(textTo(to(spammer), "hi", mid()))).ack?.status).toBe(SendAckStatus.OK);
    expect((await send(textTo(to(fan), "thanks", mid()))).ack?.status).toBe(SendAckStatus.OK);
  });

  test("limits the chats forwarded content goes to (RATE_FORWARDED_CHATS_BURST); unforwarded sends are not limited", async () => {
    const stack = await startStack({
      delivery: deliveryEnv({ RATE_FORWARDED_CHATS_BURST: "2", RATE_FORWARDED_CHATS_PER_HOUR: "1" }),
    });
    const sender = await registerPhone(stack);
    const chats = [await registerPhone(stack), await registerPhone(stack), await registerPhone(stack)];
    const [c0, c1, c2] = chats as [WaDevice, WaDevice, WaDevice];
    const send = await chatOf(sender);
    const forward = (d: WaDevice, id = mid()) => send({ ...textTo(to(d), "fw", id), forwarded: true });

    expect((await forward(c0)).ack?.status).toBe(SendAckStatus.OK);
    expect((await forward(c1)).ack?.status).toBe(SendAckStatus.OK);
    const refused = await forward(c2, "m-fw-3");
    expect(refused.error).toMatchObject({
      id: "m-fw-3",
      code: Code.ResourceExhausted,
      reason: "RATE_LIMITED",
    });
    expect(refused.error?.retryAfterMs).toBeGreaterThan(0n);
    // Forwarding again into a chat that already got forwarded content counts too.
    expect((await forward(c0)).error?.reason).toBe("RATE_LIMITED");
    expect(await queuedFor(stack, c2.accountId)).toBe(0);

    // The same content unforwarded goes through, to every chat.
    for (const d of chats)
      expect((await send(textTo(to(d), "not forwarded", mid()))).ack?.status).toBe(SendAckStatus.OK);

    // The flag reaches the recipient (the gateway maps OutgoingChat.forwarded into the envelope).
    const inbox = openChat(c0);
    await inbox.until(() => inbox.drained() === 1);
    expect(inbox.messages().map((m) => m.forwarded)).toEqual([true, false]);
  });

  test("SendSealed: the per-(recipient, access key) limit answers RESOURCE_EXHAUSTED RATE_LIMITED with RetryInfo", async () => {
    // RATE_PAIR_PER_SECOND=1: a bucket of 5 (five seconds' worth), refilled at 1 per second.
    const stack = await startStack({ delivery: deliveryEnv({ RATE_PAIR_PER_SECOND: "1" }) });
    const bob = await registerPhone(stack);
    const carol = await registerPhone(stack);
    const bobKey = randomBytes(16);
    const carolKey = randomBytes(16);
    await bob.client.setUnidentifiedAccess({ accessKey: bobKey });
    await carol.client.setUnidentifiedAccess({ accessKey: carolKey });
    const sealed = sealedSender(stack);

    let sent = 0;
    let refused: unknown;
    while (refused === undefined && sent < 20) {
      const r = await failure(sealed(bob, bobKey));
      if (r === undefined) sent++;
      else refused = r;
    }
    expect(sent).toBeGreaterThanOrEqual(5);
    expect(sent).toBeLessThan(20);
    expect(isAppError(refused) && [refused.code, refused.reason]).toEqual([
      Code.ResourceExhausted,
      "RATE_LIMITED",
    ]);
    expect((refused as AppError).retryAfterMs).toBeGreaterThan(0);
    expect((refused as AppError).retryAfterMs).toBeLessThanOrEqual(1000);
    expect(await queuedFor(stack, bob.accountId)).toBe(sent);
    // Another recipient's bucket is its own.
    expect((await sealed(carol, carolKey)).ack?.status).toBe(SendAckStatus.OK);
  });

  test("SendSealed: rotating or disabling the access key blocks the old key at once; bad keys are refused clearly", async () => {
    const stack = await startStack();
    const bob = await registerPhone(stack);
    const oldKey = randomBytes(16);
    const newKey = randomBytes(16);
    const sealed = sealedSender(stack);
    await bob.client.setUnidentifiedAccess({ accessKey: oldKey });
    expect((await sealed(bob, oldKey)).ack?.status).toBe(SendAckStatus.OK);

    await bob.client.setUnidentifiedAccess({ accessKey: newKey });
    const stale = await failure(sealed(bob, oldKey));
    expect(isAppError(stale) && [stale.code, stale.reason]).toEqual([
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    ]);
    expect((await sealed(bob, newKey)).ack?.status).toBe(SendAckStatus.OK);

    await bob.client.setUnidentifiedAccess({ disable: true });
    const disabled = await failure(sealed(bob, newKey));
    expect(isAppError(disabled) && disabled.reason).toBe("INVALID_ACCESS_KEY");
    expect(await queuedFor(stack, bob.accountId)).toBe(2);

    // Bad input: a key of the wrong size, on either side.
    const short = await failure(bob.client.setUnidentifiedAccess({ accessKey: randomBytes(8) }));
    expect(isAppError(short) && [short.code, short.reason]).toEqual([
      Code.InvalidArgument,
      "INVALID_ACCESS_KEY",
    ]);
    const none = await failure(bob.client.setUnidentifiedAccess({}));
    expect(isAppError(none) && [none.code, none.reason]).toEqual([Code.InvalidArgument, "MISSING_FIELD"]);
    const malformed = await failure(sealed(bob, randomBytes(3)));
    expect(isAppError(malformed) && [malformed.code, malformed.reason]).toEqual([
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    ]);
  });
});

/** An anonymous SendSealed client: `send(recipient, key)` sends one sealed message to its primary device. */
function sealedSender(stack: Stack) {
  const anonymous = waClient(stack.target);
  return (recipient: WaDevice, accessKey: Uint8Array) =>
    anonymous.sendSealed({
      accessKey,
      message: {
        id: mid(),
        to: userJid(recipient.jid),
        t: BigInt(Date.now()),
        participants: [
          {
            jid: recipient.jid,
            registrationId: recipient.registrationId,
            kind: MessageKind.SEALED,
            ciphertext: randomBytes(32),
          },
        ],
      },
    });
}
