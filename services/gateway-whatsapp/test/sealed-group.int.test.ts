// Sealed group messages and sealed typing through the WhatsApp-style gateway, end to end with the
// SDK (createWhatsAppTransport): the open SendSealedMultiRecipient call and ephemeral SendSealed
// (docs/safety.md "Sealed sender").
import { Code, isAppError } from "@switchboard/errors";
import { App, EnvelopeType, content } from "@switchboard/proto";
import { deriveAccessKey, generateProfileKey } from "@switchboard/sdk";
import { createDatabase, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { describe, expect, onTestFinished, test } from "vitest";
import { newPhone, sleep, startStack, waClient, type Stack } from "./harness.js";
import { openUser, registerUser, until, type WaUser } from "./sdk-users.js";

/** Links a companion device to `primary`'s account through a link code. */
async function linkCompanion(stack: Stack, primary: WaUser): Promise<WaUser> {
  const { code } = await primary.transport.createLinkCode();
  const u = await openUser(stack, primary.phone);
  const r = await u.client.registerDevice({ accountId: primary.accountId, appToken: code });
  return { ...u, accountId: primary.accountId, deviceId: r.deviceId };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

const queuedRows = (db: Kysely<Database>, accountIds: string[]) =>
  db.selectFrom("queued_messages").selectAll().where("account_id", "in", accountIds).execute();

const jidOf = (u: WaUser) => `${u.phone.slice(1)}@s.whatsapp.net`;

describe("sealed group messages and typing through the WhatsApp-style gateway", () => {
  test("a sealed group message reaches every member device with no stored sender; a wrong key stores nothing", async () => {
    const stack = await startStack();
    const db = createDatabase({ url: stack.databaseUrl, poolSize: 2 });
    onTestFinished(() => db.destroy());
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    const bobLaptop = await linkCompanion(stack, bob);
    const carol = await registerUser(stack);
    const bobProfile = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(bobProfile) });
    await carol.client.setSealedSenderAccess({ unrestricted: true });
    for (const u of [bob, carol]) await alice.client.resolveHandle({ app: App.WHATSAPP, value: u.phone });
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
    const rows = await queuedRows(db, [bob.accountId, carol.accountId]);
    // Sender keys to bob's 2 devices and carol's, then the group message to the same 3.
    expect(rows.map((r) => r.type)).toEqual(Array(6).fill(EnvelopeType.SEALED_SENDER));
    expect(new Set(rows.map((r) => `${r.account_id}.${r.device_id}`)).size).toBe(3);
    for (const row of rows)
      expect(row).toMatchObject({
        source_account_id: null,
        source_device_id: null,
        source_registration_id: 0,
        group_id: null,
      });
    expect(JSON.stringify(rows)).not.toContain(alice.accountId);

    // A wrong key for bob makes the combined key wrong: refused without naming bob, nothing stored.
    const wrong = await failure(
      alice.client.sendGroupMessage(group.id, {
        text: "never delivered",
        sealedSender: {
          accessKeys: { ...sealedSender.accessKeys, [bob.accountId]: deriveAccessKey(generateProfileKey()) },
        },
      }),
    );
    expect(isAppError(wrong) && [wrong.code, wrong.reason, wrong.message.includes(bob.accountId)]).toEqual([
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
      false,
    ]);
    expect(await queuedRows(db, [bob.accountId, carol.accountId])).toHaveLength(6);

    await alice.client.sendGroupMessage(group.id, { text: "sealed again", sealedSender });
    for (const u of [bob, bobLaptop, carol]) u.client.start();
    for (const u of [bob, bobLaptop, carol]) {
      const received = await until(u, "message", 2);
      expect(received.map((m) => m.message.text)).toEqual(["sealed hello", "sealed again"]);
      for (const m of received) {
        expect(m.meta.sealedSender).toBe(true);
        expect(m.meta.groupId).toBe(group.id);
        expect(m.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });
      }
    }

    // A device alice does not know yet: the gateway answers DEVICES_CHANGED naming bob's new
    // device JID, nothing stored; the SDK distributes its sender key and sends again.
    const bobTablet = await linkCompanion(stack, bob);
    bobTablet.client.start();
    const later = await alice.client.sendGroupMessage(group.id, { text: "to the new device", sealedSender });
    expect(later.kind).toBe("sent");
    const [onTablet] = await until(bobTablet, "message");
    expect([onTablet?.message.text, onTablet?.meta.sealedSender]).toEqual(["to the new device", true]);
    for (const u of [alice, bob, bobLaptop, bobTablet, carol])
      expect([u.events.decryptionFailed, u.events.error]).toEqual([[], []]);
  });

  test("SendSealedMultiRecipient is open and hides who is registered; malformed requests are refused clearly", async () => {
    const stack = await startStack();
    const bob = await registerUser(stack);
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(generateProfileKey()) });
    const anonymous = waClient(stack.target);
    const send = (recipients: string[], messages = [new Uint8Array(8)]) =>
      failure(
        anonymous.sendSealedMultiRecipient({
          id: "m1",
          recipients,
          messages,
          accessKey: deriveAccessKey(generateProfileKey()),
        }),
      );
    const unknown = `${newPhone().slice(1)}@s.whatsapp.net`;
    // A registered user and an unknown number get the same answer, for a malformed message as for
    // a wrong key (the first test covers well-formed messages).
    const answers = [];
    for (const recipients of [[jidOf(bob)], [unknown], [jidOf(bob), unknown]]) {
      const err = await send(recipients);
      answers.push(isAppError(err) && [err.code, err.reason]);
    }
    expect(answers).toEqual(Array(3).fill([Code.InvalidArgument, "INVALID_MULTI_RECIPIENT_MESSAGE"]));
    const cases: Array<[string[], string]> = [
      [[], "RECIPIENTS_REQUIRED"],
      [[`${bob.phone.slice(1)}:1@s.whatsapp.net`], "USER_JID_REQUIRED"],
      [[jidOf(bob), jidOf(bob)], "DUPLICATE_RECIPIENT"],
    ];
    for (const [recipients, reason] of cases) {
      const err = await send(recipients);
      expect(isAppError(err) && [err.code, err.reason]).toEqual([Code.InvalidArgument, reason]);
    }
  });

  test("sealed typing reaches a connected device, to a user and to a group, and is never stored", async () => {
    const stack = await startStack();
    const db = createDatabase({ url: stack.databaseUrl, poolSize: 2 });
    onTestFinished(() => db.destroy());
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    const accessKey = deriveAccessKey(generateProfileKey());
    await bob.client.setSealedSenderAccess({ accessKey });
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    // A session (and, for the group, alice's sender key) first, through sealed messages.
    await alice.client.sendMessage(bob.accountId, { text: "hi", sealedSender: { accessKey } });
    const group = await alice.client.createGroup([bob.accountId]);
    const sealedGroup = { accessKeys: { [bob.accountId]: accessKey } };
    await alice.client.sendGroupMessage(group.id, { text: "hi all", sealedSender: sealedGroup });
    // Offline: typing is not kept for later.
    await alice.client.sendTyping({ accountId: bob.accountId }, content.TypingAction.STARTED, {
      sealedSender: { accessKey },
    });
    await alice.client.sendTyping({ groupId: group.id }, content.TypingAction.STARTED, {
      sealedSender: sealedGroup,
    });
    bob.client.start();
    await until(bob, "message", 2);
    await until(bob, "queueEmpty");
    expect(bob.events.typing).toEqual([]);

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
    // The two messages were acknowledged and nothing of the typing was queued.
    const started = Date.now();
    while ((await queuedRows(db, [bob.accountId])).length > 0) {
      if (Date.now() - started > 10_000) throw new Error("queued rows left for bob");
      await sleep(50);
    }
    const wrong = await failure(
      alice.client.sendTyping({ groupId: group.id }, content.TypingAction.STARTED, {
        sealedSender: { accessKeys: { [bob.accountId]: deriveAccessKey(generateProfileKey()) } },
      }),
    );
    expect(isAppError(wrong) && wrong.reason).toBe("INVALID_ACCESS_KEY");
    for (const u of [alice, bob]) expect([u.events.decryptionFailed, u.events.error]).toEqual([[], []]);
  });
});
