// Safety through the Instagram-style gateway, end to end with the SDK (createInstagramTransport):
// a message held as a request keeps its franking tag, and after the request is accepted the
// recipient reports it with proof; sealed-sender items go over the open POST /v1/sealed/items and
// nothing stored names their sender (docs/safety.md).
import { randomUUID } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { isAppError } from "@switchboard/errors";
import { App, content } from "@switchboard/proto";
import {
  createClient,
  createInstagramTransport,
  createMemoryStore,
  deriveAccessKey,
  generateProfileKey,
  type ClientEvents,
} from "@switchboard/sdk";
import { listReportsAgainst, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { describe, expect, it, onTestFinished } from "vitest";
import { api, signUp, sleep, startStack } from "./harness.js";

type Recorded = { [K in keyof ClientEvents]: ClientEvents[K][] };

async function igUser(baseUrl: string, opts: { start?: boolean } = {}) {
  const transport = createInstagramTransport({ baseUrl });
  const client = await createClient({ transport, store: createMemoryStore() });
  const events = { message: [], error: [], decryptionFailed: [] } as unknown as Recorded;
  for (const name of ["message", "error", "decryptionFailed"] as const)
    client.on(name, (e) => void (events[name] as unknown[]).push(e));
  onTestFinished(async () => {
    await client.close();
    await transport.close();
  });
  const { accountId } = await client.registerAccount({
    handle: { app: App.INSTAGRAM, value: `sf_${randomUUID().slice(0, 8)}` },
    appToken: "unused",
  });
  if (opts.start !== false) client.start();
  return { client, transport, events, accountId };
}

describe("message franking through the Instagram-style gateway", () => {
  it("reports a message received as a request, with proof; a tampered report is rejected", async () => {
    const { gateway, db } = await startStack();
    const ada = await igUser(gateway.url);
    const bob = await igUser(gateway.url);
    await ada.client.sendMessage(bob.accountId, { text: "click this totally safe link" });

    let threadId: string | undefined;
    for (let i = 0; i < 200 && threadId === undefined; i++) {
      const r = await api<{ threads: { thread_id: string; sender: { account_id: string } }[] }>(
        gateway.url,
        "GET",
        "/v1/direct/pending",
        { token: bob.transport.accessToken },
      );
      threadId = r.body.threads.find((t) => t.sender.account_id === ada.accountId)?.thread_id;
      if (threadId === undefined) await sleep(50);
    }
    if (threadId === undefined) throw new Error("no message request");
    await api(gateway.url, "POST", `/v1/direct/pending/${threadId}/accept`, {
      token: bob.transport.accessToken,
    });
    for (let i = 0; i < 400 && bob.events.message.length === 0; i++) await sleep(50);
    const received = bob.events.message[0];
    if (!received) throw new Error("no message");
    expect(received.meta.serverFrankingTag.byteLength).toBe(32);

    const tampered = clone(content.DataMessageSchema, received.message);
    tampered.text = "a harmless link";
    const err = await bob.client.report({ meta: received.meta, message: tampered }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.reason).toBe("COMMITMENT_MISMATCH");

    const { reportId } = await bob.client.report(received, "phishing");
    const stored = await listReportsAgainst(db as unknown as Kysely<Database>, ada.accountId);
    expect(stored.map((r) => r.id)).toEqual([reportId]);
    expect([bob.events.error, bob.events.decryptionFailed]).toEqual([[], []]);
  });
});

/** Every row of the gateway's own tables and the delivery queue, as JSON (to search for an id). */
async function storedRows(db: Kysely<Database>, igDb: Awaited<ReturnType<typeof startStack>>["db"]) {
  const [queued, threads, relationships, requests] = await Promise.all([
    db.selectFrom("queued_messages").selectAll().execute(),
    igDb.selectFrom("ig_threads").selectAll().execute(),
    igDb.selectFrom("ig_relationships").selectAll().execute(),
    igDb.selectFrom("ig_requests").selectAll().execute(),
  ]);
  return { queued, json: JSON.stringify({ queued, threads, relationships, requests }) };
}

describe("sealed sender through the Instagram-style gateway", () => {
  it("delivers a sealed item from a stranger live; nothing stored names the sender; a wrong key is refused", async () => {
    const { gateway, db } = await startStack();
    const deliveryDb = db as unknown as Kysely<Database>;
    const ada = await igUser(gateway.url);
    const bob = await igUser(gateway.url, { start: false });
    const profileKey = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(profileKey) });
    const cert = await ada.transport.getSenderCertificate();
    expect(cert.certificate.byteLength).toBeGreaterThan(0);
    expect(cert.expiresAtMs).toBeGreaterThan(Date.now());
    expect((await ada.transport.getSealedSenderTrustRoot()).byteLength).toBeGreaterThan(0);

    const wrong = await ada.client
      .sendMessage(bob.accountId, {
        text: "x",
        sealedSender: { accessKey: deriveAccessKey(generateProfileKey()) },
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isAppError(wrong) && wrong.reason).toBe("INVALID_ACCESS_KEY");
    expect((await storedRows(deliveryDb, db)).queued.filter((r) => r.account_id === bob.accountId)).toEqual(
      [],
    );

    const sent = await ada.client.sendMessage(bob.accountId, {
      text: "sealed through instagram",
      sealedSender: { accessKey: deriveAccessKey(profileKey) },
    });
    expect(sent.kind).toBe("sent");
    const stored = await storedRows(deliveryDb, db);
    const toBob = stored.queued.filter((r) => r.account_id === bob.accountId);
    expect(toBob.map((r) => [r.source_account_id, r.source_device_id])).toEqual([[null, null]]);
    // Ada never messaged anyone identified: no row anywhere (queue, inbox, requests) names her.
    expect(stored.json).not.toContain(ada.accountId);

    bob.client.start();
    for (let i = 0; i < 400 && bob.events.message.length === 0; i++) await sleep(50);
    const received = bob.events.message[0];
    expect(received?.message.text).toBe("sealed through instagram");
    expect(received?.meta.sealedSender).toBe(true);
    expect(received?.meta.sender).toEqual({ accountId: ada.accountId, deviceId: 1 });
    expect([bob.events.error, bob.events.decryptionFailed]).toEqual([[], []]);
    // Delivered live although Ada is no accepted contact: no request was held, no inbox row written.
    const after = await db
      .selectFrom("ig_threads")
      .select("peer_account_id")
      .where("owner_account_id", "=", bob.accountId)
      .execute();
    expect(after.map((t) => t.peer_account_id)).not.toContain(ada.accountId);
    expect(
      await db.selectFrom("ig_requests").selectAll().where("owner_account_id", "=", bob.accountId).execute(),
    ).toEqual([]);
  });

  it("answers bad sealed-sender input with problems and stores nothing", async () => {
    const { gateway, db } = await startStack();
    const bob = await signUp(gateway.url);
    const key = Buffer.alloc(16, 7).toString("base64");
    const item = (over: Record<string, unknown> = {}) => ({
      recipient: { account_id: bob.accountId },
      access_key: key,
      client_context: "c1",
      ciphertexts: [
        { device_id: 1, registration_id: bob.registrationId, type: "sealed_sender", body: "AAAA" },
      ],
      ...over,
    });
    const post = (body: unknown) => api(gateway.url, "POST", "/v1/sealed/items", { body });

    // Sealed sender is off until the recipient turns it on: any key is refused.
    const off = await post(item());
    expect([off.status, off.body.reason, off.headers.get("content-type")]).toEqual([
      401,
      "INVALID_ACCESS_KEY",
      "application/problem+json; charset=utf-8",
    ]);

    const put = (body: unknown, token: string | null = bob.token) =>
      api(gateway.url, "PUT", "/v1/me/settings/unidentified_access", {
        ...(token === null ? {} : { token }),
        body,
      });
    const anonymous = await put({ access_key: key }, null);
    expect([anonymous.status, anonymous.body.reason]).toEqual([401, "MISSING_TOKEN"]);
    const empty = await put({});
    expect([empty.status, empty.body.reason]).toEqual([400, "MISSING_FIELD"]);
    const both = await put({ disabled: true, access_key: key });
    expect([both.status, both.body.reason]).toEqual([400, "CONFLICTING_ACCESS"]);
    const short = await put({ access_key: Buffer.alloc(8).toString("base64") });
    expect([short.status, short.body.reason]).toEqual([400, "INVALID_ARGUMENT"]);
    expect((await put({ access_key: key })).status).toBe(204);

    const badKey = await post(item({ access_key: "not a key" }));
    expect([badKey.status, badKey.body.reason]).toEqual([400, "INVALID_ARGUMENT"]);
    const identified = await post(
      item({
        ciphertexts: [
          { device_id: 1, registration_id: bob.registrationId, type: "ciphertext", body: "AAAA" },
        ],
      }),
    );
    expect([identified.status, identified.body.reason]).toEqual([400, "INVALID_ARGUMENT"]);
    const noCiphertexts = await post(item({ ciphertexts: [] }));
    expect([noCiphertexts.status, noCiphertexts.body.reason]).toEqual([400, "INVALID_ARGUMENT"]);
    const wrongKey = await post(item({ access_key: Buffer.alloc(16, 8).toString("base64") }));
    expect([wrongKey.status, wrongKey.body.reason]).toEqual([401, "INVALID_ACCESS_KEY"]);
    // An unknown user looks exactly like a wrong key.
    const unknown = await post(item({ recipient: { account_id: randomUUID() } }));
    expect([unknown.status, unknown.body.reason]).toEqual([401, "INVALID_ACCESS_KEY"]);
    const devices = await post(
      item({
        ciphertexts: [{ device_id: 2, registration_id: 1, type: "sealed_sender", body: "AAAA" }],
      }),
    );
    expect([
      devices.status,
      devices.body.reason,
      devices.body.missing_devices,
      devices.body.extra_devices,
    ]).toEqual([409, "DEVICES_CHANGED", [1], [2]]);
    const deliveryDb = db as unknown as Kysely<Database>;
    expect(await deliveryDb.selectFrom("queued_messages").selectAll().execute()).toEqual([]);

    const ok = await post(item());
    expect([ok.status, ok.body.recipient_id, ok.body.client_context, ok.body.duplicate]).toEqual([
      200,
      bob.accountId,
      "c1",
      false,
    ]);
    const again = await post(item());
    expect([again.body.server_id, again.body.duplicate]).toEqual([ok.body.server_id, true]);

    const noKey = await api(gateway.url, "GET", "/v1/me/sender_certificate", { token: bob.token });
    expect([noKey.status, noKey.body.reason]).toEqual([400, "NO_IDENTITY_KEY"]);
    expect((await api(gateway.url, "GET", "/v1/me/sender_certificate")).status).toBe(401);

    const spec = await api<{ paths: Record<string, Record<string, { security?: unknown }>> }>(
      gateway.url,
      "GET",
      "/openapi.json",
    );
    expect(spec.body.paths["/v1/sealed/items"]?.post?.security).toBeUndefined();
    expect(spec.body.paths["/v1/me/sender_certificate"]?.get?.security).toEqual([{ bearerAuth: [] }]);
    expect(spec.body.paths["/v1/me/settings/unidentified_access"]?.put).toBeDefined();
  });
});
