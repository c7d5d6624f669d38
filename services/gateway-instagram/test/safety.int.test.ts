// Message franking through the Instagram-style gateway, end to end with the SDK
// (createInstagramTransport): a message held as a request keeps its franking tag, and after the
// request is accepted the recipient reports it with proof (docs/safety.md).
import { randomUUID } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { isAppError } from "@switchboard/errors";
import { App, content } from "@switchboard/proto";
import {
  createClient,
  createInstagramTransport,
  createMemoryStore,
  type ClientEvents,
} from "@switchboard/sdk";
import { listReportsAgainst, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { describe, expect, it, onTestFinished } from "vitest";
import { api, sleep, startStack } from "./harness.js";

type Recorded = { [K in keyof ClientEvents]: ClientEvents[K][] };

async function igUser(baseUrl: string) {
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
  client.start();
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
