// Message franking and sealed sender end to end: SDK clients over the real delivery service.
import { isAppError } from "@switchboard/errors";
import { listReportsAgainst } from "@switchboard/storage";
import { clone } from "@bufbuild/protobuf";
import { content } from "@switchboard/proto";
import { describe, expect, it } from "vitest";
import { deriveAccessKey, generateProfileKey } from "../src/index.js";
import { registerUser, startDelivery, texts, until } from "./harness.js";

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe("message franking", () => {
  it("lets a recipient report a message with proof; a tampered report is rejected", async () => {
    const { target, db } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "you will regret this" });
    const [received] = await until(bob, "message");
    if (!received) throw new Error("no message");
    expect(received.meta.reportTag.byteLength).toBe(32);
    expect(received.meta.serverFrankingTag.byteLength).toBe(32);
    expect(received.message.frankingKey.byteLength).toBe(32);

    const tampered = clone(content.DataMessageSchema, received.message);
    tampered.text = "you will love this";
    const err = await failure(bob.client.report({ meta: received.meta, message: tampered }));
    expect(isAppError(err) && err.reason).toBe("COMMITMENT_MISMATCH");
    const framed = await failure(
      bob.client.report({
        meta: { ...received.meta, sender: { accountId: bob.accountId, deviceId: 1 } },
        message: received.message,
      }),
    );
    expect(isAppError(framed) && framed.reason).toBe("FRANKING_TAG_MISMATCH");

    const { reportId } = await bob.client.report(received, "threat");
    const stored = await listReportsAgainst(db, alice.accountId);
    expect(stored.map((r) => r.id)).toEqual([reportId]);
    expect(stored[0]?.reporter_account_id).toBe(bob.accountId);
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toContain("you will regret this");
  });
});

describe("sealed sender", () => {
  it("delivers a message whose sender only the recipient learns, refuses a wrong key, and reports it", async () => {
    const { target, db } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    const profileKey = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(profileKey) });
    bob.client.start();

    const wrong = await failure(
      alice.client.sendMessage(bob.accountId, {
        text: "knock knock",
        sealedSender: { accessKey: deriveAccessKey(generateProfileKey()) },
      }),
    );
    expect(isAppError(wrong) && wrong.reason).toBe("INVALID_ACCESS_KEY");

    // Alice knows bob's profile key (shared inside an encrypted message in a real app).
    const sent = await alice.client.sendMessage(bob.accountId, {
      text: "a secret admirer",
      sealedSender: { accessKey: deriveAccessKey(profileKey) },
    });
    expect(sent.kind).toBe("sent");
    const [received] = await until(bob, "message");
    if (!received) throw new Error("no message");
    expect(received.meta.sealedSender).toBe(true);
    expect(received.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });
    expect(texts(bob)).toEqual(["a secret admirer"]);
    const rows = await db.selectFrom("queued_messages").selectAll().execute();
    for (const row of rows.filter((r) => r.account_id === bob.accountId)) {
      expect(row.source_account_id).toBeNull();
      expect(row.source_device_id).toBeNull();
    }

    // The session the sealed message opened works both ways.
    alice.client.start();
    await bob.client.sendMessage(alice.accountId, { text: "who is this?" });
    await until(alice, "message");
    expect(texts(alice)).toEqual(["who is this?"]);

    const { reportId } = await bob.client.report(received, "unwanted");
    const stored = await listReportsAgainst(db, alice.accountId);
    expect(stored.map((r) => [r.id, r.sealed_sender])).toEqual([[reportId, true]]);

    // Blocking: bob rotates his profile key; alice's old key stops working.
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(generateProfileKey()) });
    const blocked = await failure(
      alice.client.sendMessage(bob.accountId, {
        text: "again",
        sealedSender: { accessKey: deriveAccessKey(profileKey) },
      }),
    );
    expect(isAppError(blocked) && blocked.reason).toBe("INVALID_ACCESS_KEY");
    for (const c of [alice, bob]) expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });
});
