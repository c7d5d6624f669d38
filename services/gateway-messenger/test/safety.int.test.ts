// Safety through the Messenger-style gateway, end to end with the SDK (createMessengerTransport):
// the franking tag arrives on the WebSocket and POST /v1/me/reports records a genuine report and
// rejects a tampered one; sealed-sender messages go over the open POST /v1/sealed/messages
// (docs/safety.md).
import { clone } from "@bufbuild/protobuf";
import { isAppError } from "@switchboard/errors";
import { App, content } from "@switchboard/proto";
import {
  createClient,
  createMemoryStore,
  createMessengerTransport,
  deriveAccessKey,
  generateProfileKey,
  type ClientEvents,
} from "@switchboard/sdk";
import { listReportsAgainst } from "@switchboard/storage";
import { describe, expect, onTestFinished, test } from "vitest";
import { startStack, type Gateway } from "./harness.js";

type Recorded = { [K in keyof ClientEvents]: ClientEvents[K][] };

async function signup(gw: Gateway) {
  const transport = createMessengerTransport({ baseUrl: gw.url });
  const client = await createClient({ transport, store: createMemoryStore() });
  const events = { message: [], error: [], decryptionFailed: [] } as unknown as Recorded;
  for (const name of ["message", "error", "decryptionFailed"] as const)
    client.on(name, (e) => void (events[name] as unknown[]).push(e));
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  const { accountId } = await client.registerAccount({
    handle: { app: App.MESSENGER, value: "" },
    appToken: "",
  });
  return { client, events, accountId };
}

describe("message franking through the Messenger-style gateway", () => {
  test("a recipient reports a message with proof; a tampered report is rejected", async () => {
    const { backend, gateway } = await startStack();
    const alice = await signup(gateway);
    const bob = await signup(gateway);
    bob.client.start();
    await alice.client.sendMessage(bob.accountId, { text: "send me your password" });
    const started = Date.now();
    while (bob.events.message.length === 0) {
      if (Date.now() - started > 15_000) throw new Error("no message");
      await new Promise((r) => setTimeout(r, 20));
    }
    const received = bob.events.message[0];
    if (!received) throw new Error("no message");
    expect(received.meta.serverFrankingTag.byteLength).toBe(32);

    const tampered = clone(content.DataMessageSchema, received.message);
    tampered.text = "nice weather";
    const err = await bob.client.report({ meta: received.meta, message: tampered }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.reason).toBe("COMMITMENT_MISMATCH");

    const { reportId } = await bob.client.report(received, "phishing");
    const stored = await listReportsAgainst(backend.deliveryDb, alice.accountId);
    expect(stored.map((r) => r.id)).toEqual([reportId]);
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toContain("send me your password");
    expect([bob.events.error, bob.events.decryptionFailed]).toEqual([[], []]);
  });

  test("sealed sender: the recipient learns the sender, the stored row does not name it, a wrong key is refused", async () => {
    const { backend, gateway } = await startStack();
    const alice = await signup(gateway);
    const bob = await signup(gateway);
    const profileKey = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(profileKey) });
    const wrong = await alice.client
      .sendMessage(bob.accountId, {
        text: "x",
        sealedSender: { accessKey: deriveAccessKey(generateProfileKey()) },
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isAppError(wrong) && wrong.reason).toBe("INVALID_ACCESS_KEY");
    const sent = await alice.client.sendMessage(bob.accountId, {
      text: "sealed through messenger",
      sealedSender: { accessKey: deriveAccessKey(profileKey) },
    });
    expect(sent.kind).toBe("sent");
    const rows = await backend.deliveryDb
      .selectFrom("queued_messages")
      .selectAll()
      .where("account_id", "=", bob.accountId)
      .execute();
    expect(rows.map((r) => [r.source_account_id, r.source_device_id])).toEqual([[null, null]]);
    expect(JSON.stringify(rows)).not.toContain(alice.accountId);
    bob.client.start();
    const started = Date.now();
    while (bob.events.message.length === 0) {
      if (Date.now() - started > 15_000) throw new Error("no message");
      await new Promise((r) => setTimeout(r, 20));
    }
    const received = bob.events.message[0];
    expect(received?.message.text).toBe("sealed through messenger");
    expect(received?.meta.sealedSender).toBe(true);
    expect(received?.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });
    expect([bob.events.error, bob.events.decryptionFailed]).toEqual([[], []]);
  });
});
