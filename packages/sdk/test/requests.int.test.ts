// Message requests, blocks and minors through the SDK over the real delivery service.
import { isAppError } from "@switchboard/errors";
import { App, RequestsPolicy } from "@switchboard/proto";
import { listReportsAgainst } from "@switchboard/storage";
import { describe, expect, it } from "vitest";
import {
  APP_TOKEN,
  eventually,
  openClient,
  overrideTransport,
  registerUser,
  sleep,
  startDelivery,
  texts,
  until,
} from "./harness.js";

let phone = 16_770_000_000 + Math.floor(Math.random() * 1_000_000) * 100;

describe("message requests (SDK)", () => {
  it("holds a stranger's messages, lists them, and decrypts them in order once accepted", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    await until(bob, "queueEmpty");
    await alice.client.sendMessage(bob.accountId, { text: "first" });
    await alice.client.sendMessage(bob.accountId, { text: "second" });

    let requests = await bob.client.listMessageRequests();
    expect(requests).toHaveLength(1);
    expect(requests[0]?.peerAccountId).toBe(alice.accountId);
    expect(requests[0]?.envelopes).toHaveLength(2);
    expect(texts(bob)).toEqual([]);

    expect(await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId })).toEqual({
      released: 2,
    });
    await until(bob, "message", 2);
    expect(texts(bob)).toEqual(["first", "second"]);
    requests = await bob.client.listMessageRequests();
    expect(requests).toHaveLength(0);
  });

  it("blocks silently, and protects a minor registered with the age signal", async () => {
    const { target } = await startDelivery();
    const adult = await registerUser(target);
    const opened = await openClient(target);
    const { accountId: minorId } = await opened.client.registerAccount({
      handle: { app: App.WHATSAPP, value: `+${phone++}` },
      appToken: APP_TOKEN,
      minor: true,
    });
    const minor = { ...opened, accountId: minorId, deviceId: 1 };
    minor.client.start();
    await until(minor, "queueEmpty");
    const sent = await adult.client.sendMessage(minorId, { text: "hi kid" });
    expect(sent.kind).toBe("sent");
    expect(await minor.client.listMessageRequests()).toHaveLength(0);

    // The minor writes first: the adult's answer arrives; after a block, nothing more does.
    await minor.client.sendMessage(adult.accountId, { text: "hello" });
    await adult.client.sendMessage(minorId, { text: "hello back" });
    await until(minor, "message", 1);
    await minor.client.block(adult.accountId);
    expect((await adult.client.sendMessage(minorId, { text: "still there?" })).kind).toBe("sent");
    // Unblocking makes the adult a stranger again: dropped until the minor writes again.
    await minor.client.unblock(adult.accountId);
    await adult.client.sendMessage(minorId, { text: "after unblock" });
    await minor.client.sendMessage(adult.accountId, { text: "hi again" });
    await adult.client.sendMessage(minorId, { text: "welcome back" });
    await eventually(async () => expect(texts(minor)).toEqual(["hello back", "welcome back"]));
  });
});

describe("message request previews and reports (SDK)", () => {
  it("previews held messages once, then emits each exactly once with the same plaintext after acceptance", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    await until(bob, "queueEmpty");
    await alice.client.sendMessage(bob.accountId, { text: "first" });
    await alice.client.sendMessage(bob.accountId, { text: "second" });

    const [preview] = await bob.client.previewMessageRequests();
    expect(preview?.peerAccountId).toBe(alice.accountId);
    expect(preview?.messages.map((m) => m.message.text)).toEqual(["first", "second"]);
    expect(preview?.failed).toEqual([]);
    // Previewing again reuses the kept plaintext (a second decryption would fail).
    const [again] = await bob.client.previewMessageRequests();
    expect(again?.messages.map((m) => m.message.text)).toEqual(["first", "second"]);
    expect(again?.failed).toEqual([]);
    expect(texts(bob)).toEqual([]);
    expect(await bob.store.state.listHeld()).toHaveLength(2);

    await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId });
    await until(bob, "message", 2);
    await sleep(300);
    expect(texts(bob)).toEqual(["first", "second"]);
    expect(bob.events.message.map((m) => m.meta.id)).toEqual(preview?.messages.map((m) => m.meta.id));
    expect(bob.events.decryptionFailed).toEqual([]);
    expect(await bob.store.state.listHeld()).toEqual([]);
    // The session survived the early decryption: the conversation goes on.
    await alice.client.sendMessage(bob.accountId, { text: "third" });
    await bob.client.sendMessage(alice.accountId, { text: "hi" });
    alice.client.start();
    await until(alice, "message");
    await until(bob, "message", 3);
    expect(texts(bob)).toEqual(["first", "second", "third"]);
    expect(texts(alice)).toEqual(["hi"]);
  });

  it("reports a stranger's franked held messages and blocks it in one call", async () => {
    const { target, db } = await startDelivery();
    let stripFranking = false;
    const carol = await registerUser(target, {
      wrap: (t) =>
        overrideTransport(t, {
          sendMessage: (request) => {
            if (stripFranking) request.reportTag = new Uint8Array(0);
            return t.sendMessage(request);
          },
        }),
    });
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    await until(bob, "queueEmpty");
    await carol.client.sendMessage(bob.accountId, { text: "buy crypto now" });
    stripFranking = true;
    await carol.client.sendMessage(bob.accountId, { text: "an unfranked one" });
    stripFranking = false;

    const missing = await bob.client
      .reportMessageRequest({ peerAccountId: alice.accountId })
      .catch((e: unknown) => e);
    expect(isAppError(missing) && missing.reason).toBe("REQUEST_NOT_FOUND");

    const r = await bob.client.reportMessageRequest({ peerAccountId: carol.accountId, reason: "spam" });
    expect(r.reported).toHaveLength(1);
    expect(r).toMatchObject({ alreadyReported: [], unfranked: 1, undecryptable: 0, blocked: true });
    const stored = await listReportsAgainst(db, carol.accountId);
    expect(stored.map((row) => row.id)).toEqual([r.reported[0]?.reportId]);
    expect(stored[0]?.message_id).toBe(r.reported[0]?.messageId);
    expect(stored[0]?.reporter_account_id).toBe(bob.accountId);
    expect(stored[0]?.reason).toBe("spam");
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toContain("buy crypto now");
    const heldRows = await db
      .selectFrom("queued_messages")
      .select("message_id")
      .where("account_id", "=", bob.accountId)
      .where("source_account_id", "=", carol.accountId)
      .execute();
    expect(heldRows).toEqual([]);
    expect(await bob.client.listMessageRequests()).toEqual([]);
    expect(await bob.store.state.listHeld()).toEqual([]);

    // Blocked: a later message is answered `sent` but never arrives (alice's, sent after it, does).
    expect((await carol.client.sendMessage(bob.accountId, { text: "still there?" })).kind).toBe("sent");
    await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId });
    await alice.client.sendMessage(bob.accountId, { text: "marker" });
    await until(bob, "message");
    await sleep(300);
    expect(texts(bob)).toEqual(["marker"]);
    expect(await bob.client.listMessageRequests()).toEqual([]);
  });
});
