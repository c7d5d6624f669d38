// Safety through the WhatsApp-style gateway, end to end with the SDK (createWhatsAppTransport):
// sealed-sender messages over the open SendSealed call, and franked reports (docs/safety.md).
import { Code, isAppError } from "@switchboard/errors";
import { App, EnvelopeType, whatsapp } from "@switchboard/proto";
import { deriveAccessKey, generateProfileKey } from "@switchboard/sdk";
import { createDatabase, listReportsAgainst } from "@switchboard/storage";
import { clone } from "@bufbuild/protobuf";
import { content } from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { newPhone, startStack, waClient } from "./harness.js";
import { registerUser, until } from "./sdk-users.js";

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe("safety through the WhatsApp-style gateway", () => {
  test("a sealed-sender message reaches the recipient with the sender hidden from the servers", async () => {
    const stack = await startStack();
    const db = createDatabase({ url: stack.databaseUrl, poolSize: 2 });
    onTestFinished(() => db.destroy());
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    const profileKey = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(profileKey) });
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });

    const wrong = await failure(
      alice.client.sendMessage(bob.accountId, {
        text: "hi",
        sealedSender: { accessKey: deriveAccessKey(generateProfileKey()) },
      }),
    );
    expect(isAppError(wrong) && [wrong.code, wrong.reason]).toEqual([
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    ]);

    const sent = await alice.client.sendMessage(bob.accountId, {
      text: "sealed over the gateway",
      sealedSender: { accessKey: deriveAccessKey(profileKey) },
    });
    expect(sent.kind).toBe("sent");
    // Bob is offline: the stored row is there to inspect, with no sender in it.
    const rows = await db
      .selectFrom("queued_messages")
      .selectAll()
      .where("account_id", "=", bob.accountId)
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      type: EnvelopeType.SEALED_SENDER,
      source_account_id: null,
      source_device_id: null,
      source_registration_id: 0,
    });
    expect(JSON.stringify(rows)).not.toContain(alice.accountId);

    bob.client.start();
    const [received] = await until(bob, "message");
    if (!received) throw new Error("no message");
    expect(received.message.text).toBe("sealed over the gateway");
    expect(received.meta.sealedSender).toBe(true);
    expect(received.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });

    const { reportId } = await bob.client.report(received, "unwanted");
    const reports = await listReportsAgainst(db, alice.accountId);
    expect(reports.map((r) => [r.id, r.sealed_sender])).toEqual([[reportId, true]]);
    for (const u of [alice, bob]) expect([u.events.decryptionFailed, u.events.error]).toEqual([[], []]);
  });

  test("SendSealed is open: it needs no token, only the recipient's key, and hides who is registered", async () => {
    const stack = await startStack();
    const bob = await registerUser(stack);
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(generateProfileKey()) });
    const anonymous = waClient(stack.target);
    const send = (to: string) =>
      anonymous.sendSealed({
        accessKey: deriveAccessKey(generateProfileKey()),
        message: {
          id: "c1",
          to,
          participants: [
            {
              jid: `${to.split("@")[0]}:1@s.whatsapp.net`,
              registrationId: 1,
              kind: whatsapp.MessageKind.SEALED,
              ciphertext: new Uint8Array(8),
            },
          ],
        },
      });
    for (const to of [`${bob.phone.slice(1)}@s.whatsapp.net`, `${newPhone().slice(1)}@s.whatsapp.net`]) {
      const err = await failure(send(to));
      expect(isAppError(err) && [err.code, err.reason]).toEqual([Code.Unauthenticated, "INVALID_ACCESS_KEY"]);
    }
  });

  test("a franked message is reported through the gateway; a tampered report is rejected", async () => {
    const stack = await startStack();
    const db = createDatabase({ url: stack.databaseUrl, poolSize: 2 });
    onTestFinished(() => db.destroy());
    const alice = await registerUser(stack);
    const bob = await registerUser(stack);
    bob.client.start();
    await alice.client.resolveHandle({ app: App.WHATSAPP, value: bob.phone });
    await alice.client.sendMessage(bob.accountId, { text: "pay up or else" });
    const [received] = await until(bob, "message");
    if (!received) throw new Error("no message");
    expect(received.meta.serverFrankingTag.byteLength).toBe(32);
    const tampered = clone(content.DataMessageSchema, received.message);
    tampered.text = "have a nice day";
    const err = await failure(bob.client.report({ meta: received.meta, message: tampered }));
    expect(isAppError(err) && err.reason).toBe("COMMITMENT_MISMATCH");
    await bob.client.report(received, "extortion");
    const reports = await listReportsAgainst(db, alice.accountId);
    expect(reports).toHaveLength(1);
    expect(Buffer.from(reports[0]?.plaintext ?? []).toString()).toContain("pay up or else");
  });
});
