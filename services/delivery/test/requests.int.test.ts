import { randomBytes, randomUUID } from "node:crypto";
import { Code } from "@switchboard/errors";
import { createClient } from "@switchboard/grpc";
import { App, EnvelopeType, RequestService, RequestsPolicy } from "@switchboard/proto";
import type { Database } from "@switchboard/storage";
import { sql, type Kysely } from "kysely";
import { describe, expect, test, onTestFinished } from "vitest";
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

let handle = 16660000000 + Math.floor(Math.random() * 1_000_000) * 100;

/** Registers a WhatsApp-style account with the safety fields of RegisterAccountRequest. */
async function register(
  target: string,
  opts: { minor?: boolean; requestsPolicy?: RequestsPolicy } = {},
): Promise<TestDevice> {
  const c = clientsFor(target, appAuth("whatsapp"));
  const password = randomBytes(18).toString("base64url");
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await c.directory.registerAccount({
    handle: { app: App.WHATSAPP, value: `+${handle++}` },
    registrationId,
    password,
    minor: opts.minor ?? false,
    requestsPolicy: opts.requestsPolicy ?? RequestsPolicy.UNSPECIFIED,
  });
  const accountId = r.account?.id ?? "";
  return { accountId, deviceId: 1, registrationId, password, auth: deviceAuth(accountId, 1, password) };
}

function requestsFor(target: string, device: TestDevice) {
  const c = createClient(RequestService, target, { metadata: () => ({ authorization: device.auth }) });
  onTestFinished(() => c.close());
  return c;
}

async function queuedRows(db: Kysely<Database>, accountId: string) {
  const r = await sql<{
    n: number;
  }>`SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${accountId}`.execute(db);
  return r.rows[0]?.n ?? 0;
}

describe("message requests", () => {
  test("deliver a stranger's first message marked as a request by default; a reply makes it a conversation", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    expect((await sendTo(clientsFor(inst.target, alice.auth), [bob], "hi bob")).result.case).toBe("sent");
    const bobReader = connectDevice(inst.target, bob);
    await bobReader.until(() => bobReader.received.length === 1);
    expect(bobReader.received[0]?.messageRequest).toBe(true);

    // Bob answers: Alice had messaged him first, so his reply is not a request for her...
    await sendTo(clientsFor(inst.target, bob.auth), [alice], "hi alice");
    const aliceReader = connectDevice(inst.target, alice);
    await aliceReader.until(() => aliceReader.received.length === 1);
    expect(aliceReader.received[0]?.messageRequest).toBe(false);
    // ...and once Bob has messaged Alice, her messages are no longer requests for him.
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "again");
    await bobReader.until(() => bobReader.received.length === 2);
    expect(bobReader.received[1]?.messageRequest).toBe(false);
  });

  test("hold a request until accepted, list it with its envelopes, then stream it in order", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const carol = await registerAccount(inst.target);
    const ca = clientsFor(inst.target, alice.auth);
    for (const t of ["one", "two", "three"]) expect((await sendTo(ca, [bob], t)).result.case).toBe("sent");

    const reader = connectDevice(inst.target, bob);
    await reader.until(() => reader.queueEmpty);
    expect(reader.received).toHaveLength(0);
    // Bob messages Carol first: Carol's reply is not a request, and it streams at once.
    await sendTo(clientsFor(inst.target, bob.auth), [carol], "hey carol");
    await sendTo(clientsFor(inst.target, carol.auth), [bob], "from carol");
    await reader.until(() => reader.received.length === 1);
    expect(text(reader.received[0] as never)).toBe("from carol");

    const requests = requestsFor(inst.target, bob);
    const list = await requests.listMessageRequests({});
    expect(list.requests).toHaveLength(1);
    const [req] = list.requests;
    expect(req?.peerAccountId).toBe(alice.accountId);
    expect(req?.peerHandle?.app).toBe(App.WHATSAPP);
    expect(req?.messageCount).toBe(3);
    expect(req?.envelopes.map((e) => Buffer.from(e.content).toString())).toEqual(["one", "two", "three"]);
    expect(req?.envelopes.every((e) => e.messageRequest)).toBe(true);

    // Acknowledging a held message does not remove it (only accept or decline do).
    await reader.ack([req?.envelopes[0]?.id ?? ""]);
    const accepted = await requests.acceptMessageRequest({ peerAccountId: alice.accountId });
    expect(accepted.released).toBe(3);
    await reader.until(() => reader.received.length === 4);
    expect(reader.received.slice(1).map((e) => text(e))).toEqual(["one", "two", "three"]);
    expect((await requests.listMessageRequests({})).requests).toHaveLength(0);

    // Accepted: later messages stream directly, unmarked.
    await sendTo(ca, [bob], "four");
    await reader.until(() => reader.received.length === 5);
    expect(reader.received[4]?.messageRequest).toBe(false);
  });

  test("a held request keeps its sender's no_delivery_receipt through acceptance", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const aliceReader = connectDevice(inst.target, alice);
    await aliceReader.until(() => aliceReader.queueEmpty);
    const ca = clientsFor(inst.target, alice.auth);
    const quiet = randomUUID();
    const loud = randomUUID();
    await sendTo(ca, [bob], "quiet", quiet, { noDeliveryReceipt: true });
    await sendTo(ca, [bob], "loud", loud);
    const reader = connectDevice(inst.target, bob);
    await reader.until(() => reader.queueEmpty);
    expect(
      (await requestsFor(inst.target, bob).acceptMessageRequest({ peerAccountId: alice.accountId })).released,
    ).toBe(2);
    await reader.until(() => reader.received.length === 2);
    // Only the message sent without the flag comes back as a receipt.
    await aliceReader.until(() => aliceReader.received.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(aliceReader.received.map((e) => [e.type, e.clientMessageId])).toEqual([
      [EnvelopeType.SERVER_DELIVERY_RECEIPT, loud],
    ]);
  });

  test("decline deletes held messages without a receipt; a later message is a new request", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const ca = clientsFor(inst.target, alice.auth);
    await sendTo(ca, [bob], "spam 1");
    await sendTo(ca, [bob], "spam 2");
    const requests = requestsFor(inst.target, bob);
    expect((await requests.declineMessageRequest({ peerAccountId: alice.accountId })).deleted).toBe(2);
    expect(await queuedRows(backend.db, bob.accountId)).toBe(0);
    await sendTo(ca, [bob], "spam 3");
    const list = await requests.listMessageRequests({});
    expect(list.requests.map((r) => r.messageCount)).toEqual([1]);
    // Nothing reached Alice: no delivery receipt for declined messages.
    const aliceReader = connectDevice(inst.target, alice);
    await aliceReader.until(() => aliceReader.queueEmpty);
    expect(aliceReader.received).toHaveLength(0);
  });

  test("block: the sender keeps hearing `sent`, nothing is stored; unblock makes it a stranger again", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const ca = clientsFor(inst.target, alice.auth);
    await sendTo(ca, [bob], "before");
    const requests = requestsFor(inst.target, bob);
    expect((await requests.block({ peerAccountId: alice.accountId })).deleted).toBe(1);
    const after = await sendTo(ca, [bob], "after");
    expect(after.result.case).toBe("sent");
    expect(await queuedRows(backend.db, bob.accountId)).toBe(0);
    // A retry with the same client_message_id answers like the first.
    const id = randomUUID();
    const first = await sendTo(ca, [bob], "retry", id);
    const again = await sendTo(ca, [bob], "retry", id);
    expect(again.result).toMatchObject({ case: "sent", value: { duplicate: true } });
    expect(again.result.value).toMatchObject({
      messageId: (first.result.value as { messageId: string }).messageId,
    });

    await requests.unblock({ peerAccountId: alice.accountId });
    await sendTo(ca, [bob], "hello again");
    expect((await requests.listMessageRequests({})).requests.map((r) => r.messageCount)).toEqual([1]);

    await expect(requests.block({ peerAccountId: randomUUID() })).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "ACCOUNT_NOT_FOUND",
    });
    await expect(requests.block({ peerAccountId: "nope" })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
  });

  test("a blocked member's group messages do not reach the blocker", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const carol = await registerAccount(inst.target);
    const g = await clientsFor(inst.target, alice.auth).groups.createGroup({
      memberAccountIds: [bob.accountId, carol.accountId],
    });
    await requestsFor(inst.target, bob).block({ peerAccountId: alice.accountId });
    const r = await clientsFor(inst.target, alice.auth).messages.sendGroupMessage({
      groupId: g.group?.id ?? "",
      content: Buffer.from("group hello"),
      clientMessageId: randomUUID(),
      clientTimestampMs: BigInt(Date.now()),
    });
    expect(r.result.case).toBe("sent");
    expect(await queuedRows(backend.db, bob.accountId)).toBe(0);
    expect(await queuedRows(backend.db, carol.accountId)).toBe(1);
  });

  test("group invitations of strangers are held for accounts that hold requests; accepting joins", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const carol = await registerAccount(inst.target);
    const g = await clientsFor(inst.target, alice.auth).groups.createGroup({
      memberAccountIds: [bob.accountId, carol.accountId],
    });
    const groupId = g.group?.id ?? "";
    expect(g.group?.members.map((m) => m.account?.id).sort()).toEqual(
      [alice.accountId, carol.accountId].sort(),
    );
    const requests = requestsFor(inst.target, bob);
    const list = await requests.listMessageRequests({});
    expect(list.requests).toMatchObject([{ groupId, peerAccountId: alice.accountId, envelopes: [] }]);
    expect(await requests.acceptMessageRequest({ groupId })).toMatchObject({ joinedGroup: true });
    const after = await clientsFor(inst.target, bob.auth).groups.getGroup({ groupId });
    expect(after.group?.members).toHaveLength(3);
    // Accepting the invitation accepted its inviter: her messages are no longer requests.
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "welcome");
    expect((await requests.listMessageRequests({})).requests).toHaveLength(0);
    await expect(requests.acceptMessageRequest({ groupId })).rejects.toMatchObject({
      code: Code.NotFound,
      reason: "INVITATION_NOT_FOUND",
    });
  });

  test("SetRequestsPolicy switches an account to holding requests and rejects unknown values", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const requests = requestsFor(inst.target, bob);
    await requests.setRequestsPolicy({ policy: RequestsPolicy.HOLD });
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "held now");
    expect((await requests.listMessageRequests({})).requests).toHaveLength(1);
    await expect(requests.setRequestsPolicy({ policy: 9 as RequestsPolicy })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      reason: "INVALID_POLICY",
    });
  });
});

describe("protection of minors", () => {
  test("an adult stranger's message to a minor is answered `sent` and never stored or listed", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const adult = await registerAccount(inst.target);
    const minor = await register(inst.target, { minor: true });
    const holder = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const ca = clientsFor(inst.target, adult.auth);
    const toMinor = await sendTo(ca, [minor], "hello");
    const toHolder = await sendTo(ca, [holder], "hello");
    // The same response shape as a held request: the adult cannot tell a minor apart.
    expect(toMinor.result.case).toBe("sent");
    expect(toHolder.result.case).toBe("sent");
    expect(Object.keys(toMinor.result.value ?? {}).sort()).toEqual(
      Object.keys(toHolder.result.value ?? {}).sort(),
    );
    expect(await queuedRows(backend.db, minor.accountId)).toBe(0);
    expect((await requestsFor(inst.target, minor).listMessageRequests({})).requests).toHaveLength(0);
    const reader = connectDevice(inst.target, minor);
    await reader.until(() => reader.queueEmpty);
    expect(reader.received).toHaveLength(0);
    // Device-list checks are the same as for anyone (no oracle in mismatch answers either).
    const wrong = await sendTo(ca, [{ ...minor, deviceId: 7 }], "x");
    expect(wrong.result.case).toBe("mismatchedDevices");
  });

  test("a minor hears from an adult it messaged first, and holds other minors' requests", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const adult = await registerAccount(inst.target);
    const minor = await register(inst.target, { minor: true });
    const otherMinor = await register(inst.target, { minor: true });
    await sendTo(clientsFor(inst.target, minor.auth), [adult], "hi, it's me");
    await sendTo(clientsFor(inst.target, adult.auth), [minor], "hi back");
    await sendTo(clientsFor(inst.target, otherMinor.auth), [minor], "wanna chat?");
    const reader = connectDevice(inst.target, minor);
    await reader.until(() => reader.received.length === 1 && reader.queueEmpty);
    expect(text(reader.received[0] as never)).toBe("hi back");
    const list = await requestsFor(inst.target, minor).listMessageRequests({});
    expect(list.requests.map((r) => r.peerAccountId)).toEqual([otherMinor.accountId]);

    // Ephemeral signals (typing) of an adult stranger are answered `sent` and never published.
    const stranger = await registerAccount(inst.target);
    const typing = await sendTo(clientsFor(inst.target, stranger.auth), [minor], "typing…", randomUUID(), {
      ephemeral: true,
    });
    expect(typing.result.case).toBe("sent");
    await sendTo(clientsFor(inst.target, adult.auth), [minor], "again");
    await reader.until(() => reader.received.length === 2);
    expect(reader.received.map((e) => text(e))).toEqual(["hi back", "again"]);
  });

  test("an adult stranger cannot add a minor to a group; the adult sees what a held invitation shows", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const adult = await registerAccount(inst.target);
    const minor = await register(inst.target, { minor: true });
    const holder = await register(inst.target, { requestsPolicy: RequestsPolicy.HOLD });
    const g = await clientsFor(inst.target, adult.auth).groups.createGroup({
      memberAccountIds: [minor.accountId, holder.accountId],
    });
    expect(g.group?.members.map((m) => m.account?.id)).toEqual([adult.accountId]);
    expect((await requestsFor(inst.target, minor).listMessageRequests({})).requests).toHaveLength(0);
    expect((await requestsFor(inst.target, holder).listMessageRequests({})).requests).toHaveLength(1);
    const added = await clientsFor(inst.target, adult.auth).groups.addGroupMembers({
      groupId: g.group?.id ?? "",
      accountIds: [minor.accountId],
    });
    expect(added.group?.members).toHaveLength(1);
  });
});

describe("abuse limits", () => {
  test("limit new conversations per sender with RATE_LIMITED and a retry hint; existing ones go on", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { RATE_NEW_CONVERSATIONS_PER_HOUR: 2 } });
    const spammer = await registerAccount(inst.target);
    const targets = await Promise.all([0, 1, 2].map(() => registerAccount(inst.target)));
    const c = clientsFor(inst.target, spammer.auth);
    expect((await sendTo(c, [targets[0] as TestDevice], "a")).result.case).toBe("sent");
    expect((await sendTo(c, [targets[1] as TestDevice], "b")).result.case).toBe("sent");
    const refused = await sendTo(c, [targets[2] as TestDevice], "c").catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: Code.ResourceExhausted, reason: "RATE_LIMITED" });
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(await queuedRows(backend.db, targets[2]?.accountId ?? "")).toBe(0);
    // Conversations already started are not new.
    expect((await sendTo(c, [targets[0] as TestDevice], "a2")).result.case).toBe("sent");
    // Replying to someone who wrote first is not a new conversation either.
    const fan = await registerAccount(inst.target);
    await sendTo(clientsFor(inst.target, fan.auth), [spammer], "hi");
    expect((await sendTo(c, [fan], "thanks")).result.case).toBe("sent");
  });

  test("limit how many chats forwarded content goes to; unforwarded sends are not limited", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { RATE_FORWARDED_CHATS_BURST: 2 } });
    const sender = await registerAccount(inst.target);
    const chats = await Promise.all([0, 1, 2].map(() => registerAccount(inst.target)));
    const c = clientsFor(inst.target, sender.auth);
    const forward = (to: TestDevice) =>
      c.messages.sendMessage({
        destinationAccountId: to.accountId,
        messages: [
          {
            deviceId: 1,
            registrationId: to.registrationId,
            type: EnvelopeType.CIPHERTEXT,
            content: Buffer.from("fw"),
          },
        ],
        clientMessageId: randomUUID(),
        clientTimestampMs: BigInt(Date.now()),
        forwarded: true,
      });
    expect((await forward(chats[0] as TestDevice)).result.case).toBe("sent");
    expect((await forward(chats[1] as TestDevice)).result.case).toBe("sent");
    const refused = await forward(chats[2] as TestDevice).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: Code.ResourceExhausted, reason: "RATE_LIMITED" });
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect((await sendTo(c, [chats[2] as TestDevice], "not forwarded")).result.case).toBe("sent");
  });
});
