// Message franking and sealed sender end to end: SDK clients over the real delivery service.
import { isAppError } from "@switchboard/errors";
import { listReportsAgainst } from "@switchboard/storage";
import { clone } from "@bufbuild/protobuf";
import { content, EnvelopeType } from "@switchboard/proto";
import { describe, expect, it } from "vitest";
import { deriveAccessKey, generateProfileKey } from "../src/index.js";
import { eventually, linkDevice, registerUser, startDelivery, texts, until } from "./harness.js";

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

describe("sealed group messages and typing", () => {
  it("reaches every member device with the sender hidden from the server; a wrong combined key is refused", async () => {
    const { target, db } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    const bobLaptop = await linkDevice(target, bob);
    const carol = await registerUser(target);
    const bobProfile = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(bobProfile) });
    await carol.client.setSealedSenderAccess({ unrestricted: true });
    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);
    const sealedSender = {
      accessKeys: {
        [bob.accountId]: deriveAccessKey(bobProfile),
        [carol.accountId]: "unrestricted" as const,
      },
    };

    // Nobody is online: the sender keys and the message stay queued for inspection.
    const sent = await alice.client.sendGroupMessage(group.id, { text: "sealed hello", sealedSender });
    expect(sent.kind).toBe("sent");
    const sealedRows = await db
      .selectFrom("queued_messages")
      .selectAll()
      .where("type", "=", EnvelopeType.SEALED_SENDER)
      .execute();
    // Sender keys to 3 devices and the group message to the same 3.
    expect(sealedRows.length).toBe(6);
    expect(JSON.stringify(sealedRows)).not.toContain(alice.accountId);
    for (const row of sealedRows) {
      expect(row.source_account_id).toBeNull();
      expect(row.group_id).toBeNull();
    }
    const aliceLog = await db
      .selectFrom("send_log")
      .selectAll()
      .where("sender_account_id", "=", alice.accountId)
      .execute();
    expect(aliceLog).toEqual([]);

    // A wrong key for bob makes the combined key wrong: refused, without naming bob.
    const wrong = await failure(
      alice.client.sendGroupMessage(group.id, {
        text: "never delivered",
        sealedSender: {
          accessKeys: { ...sealedSender.accessKeys, [bob.accountId]: deriveAccessKey(generateProfileKey()) },
        },
      }),
    );
    expect(isAppError(wrong) && [wrong.reason, wrong.message.includes(bob.accountId)]).toEqual([
      "INVALID_ACCESS_KEY",
      false,
    ]);
    const missing = await failure(
      alice.client.sendGroupMessage(group.id, { text: "x", sealedSender: { accessKeys: {} } }),
    );
    expect(isAppError(missing) && missing.reason).toBe("MISSING_ACCESS_KEY");
    await alice.client.sendGroupMessage(group.id, { text: "sealed again", sealedSender });

    for (const c of [bob, bobLaptop, carol]) c.client.start();
    for (const c of [bob, bobLaptop, carol]) {
      const received = await until(c, "message", 2);
      expect(received.map((m) => m.message.text)).toEqual(["sealed hello", "sealed again"]);
      for (const m of received) {
        expect(m.meta.sealedSender).toBe(true);
        expect(m.meta.groupId).toBe(group.id);
        expect(m.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });
        expect(m.message.group?.groupId).toBe(group.id);
      }
    }
    for (const c of [alice, bob, bobLaptop, carol])
      expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });

  it("drops a sealed group message from an account that is no longer a member (NOT_A_GROUP_MEMBER)", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    const carol = await registerUser(target);
    const bobKey = deriveAccessKey(generateProfileKey());
    await bob.client.setSealedSenderAccess({ accessKey: bobKey });
    await alice.client.setSealedSenderAccess({ unrestricted: true });
    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);
    const sealedSender = {
      accessKeys: { [alice.accountId]: "unrestricted" as const, [bob.accountId]: bobKey },
    };
    // While a member, carol's sealed group message is accepted.
    await carol.client.getGroup(group.id);
    await carol.client.sendGroupMessage(group.id, { text: "while a member", sealedSender });
    bob.client.start();
    const [first] = await until(bob, "message");
    expect([first?.message.text, first?.meta.sender?.accountId]).toEqual(["while a member", carol.accountId]);

    // Alice removes carol; bob's view is current. Carol's client (not running) still holds the old
    // member list and the sender key bob accepted, and the server cannot tell who sends sealed.
    await alice.client.removeGroupMembers(group.id, [carol.accountId]);
    await bob.client.getGroup(group.id);
    const sent = await carol.client.sendGroupMessage(group.id, { text: "after removal", sealedSender });
    expect(sent.kind).toBe("sent");
    const [failed] = await until(bob, "decryptionFailed");
    expect(isAppError(failed?.error) && failed.error.reason).toBe("NOT_A_GROUP_MEMBER");
    expect(texts(bob)).toEqual(["while a member"]);
  });

  it("delivers sealed typing to connected devices only, to an account and to a group", async () => {
    const { target, db } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    const profileKey = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(profileKey) });
    const accessKey = deriveAccessKey(profileKey);
    // A session (and, for the group, alice's sender key) first, through sealed messages.
    await alice.client.sendMessage(bob.accountId, { text: "hi", sealedSender: { accessKey } });
    const group = await alice.client.createGroup([bob.accountId]);
    const sealedGroup = { accessKeys: { [bob.accountId]: accessKey } };
    await alice.client.sendGroupMessage(group.id, { text: "hi all", sealedSender: sealedGroup });
    // Offline: typing is not kept for later.
    await alice.client.sendTyping({ accountId: bob.accountId }, content.TypingAction.STARTED, {
      sealedSender: { accessKey },
    });
    bob.client.start();
    await until(bob, "message", 2);
    await until(bob, "queueEmpty");

    await alice.client.sendTyping({ accountId: bob.accountId }, content.TypingAction.STARTED, {
      sealedSender: { accessKey },
    });
    await alice.client.sendTyping({ groupId: group.id }, content.TypingAction.STOPPED, {
      sealedSender: sealedGroup,
    });
    const typing = await until(bob, "typing", 2);
    expect(
      typing.map((t) => [t.typing.action, t.meta.groupId, t.meta.sealedSender, t.meta.ephemeral]),
    ).toEqual([
      [content.TypingAction.STARTED, undefined, true, true],
      [content.TypingAction.STOPPED, group.id, true, true],
    ]);
    expect(typing.every((t) => t.meta.sender.accountId === alice.accountId)).toBe(true);
    // Nothing of the typing is stored; a wrong key is refused like any sealed send.
    await eventually(async () => {
      const rows = await db
        .selectFrom("queued_messages")
        .selectAll()
        .where("account_id", "=", bob.accountId)
        .execute();
      expect(rows).toEqual([]);
    });
    const wrong = await failure(
      alice.client.sendTyping({ accountId: bob.accountId }, content.TypingAction.STARTED, {
        sealedSender: { accessKey: deriveAccessKey(generateProfileKey()) },
      }),
    );
    expect(isAppError(wrong) && wrong.reason).toBe("INVALID_ACCESS_KEY");
    for (const c of [alice, bob]) expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);
  });
});
