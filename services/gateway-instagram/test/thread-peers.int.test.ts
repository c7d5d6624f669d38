import { randomUUID } from "node:crypto";
import { dbTest, withDatabase } from "@switchboard/testkit";
import { describe, expect, onTestFinished } from "vitest";
import { directThreadId } from "../src/domain/thread-id.js";
import type { IgDatabase } from "../src/storage/schema.js";
import { createThreadPeers } from "../src/storage/thread-peers.js";
import { deleteThread, upsertThread } from "../src/storage/thread-repository.js";

function open(databaseUrl: string) {
  const db = withDatabase<IgDatabase>(databaseUrl);
  onTestFinished(() => db.destroy());
  return db;
}

const privateThread = (owner: string, peer: string) => ({
  ownerAccountId: owner,
  threadId: directThreadId(owner, peer),
  threadType: "private" as const,
  peerAccountId: peer,
  activityAt: new Date(),
});

describe("createThreadPeers", () => {
  dbTest("finds the peer of a one-to-one thread in the owner's inbox", async ({ databaseUrl }) => {
    const db = open(databaseUrl);
    const [me, peer] = [randomUUID(), randomUUID()];
    await upsertThread(db, privateThread(me, peer));
    const peers = createThreadPeers({ db });
    expect(await peers.find(me, directThreadId(me, peer))).toBe(peer);
    // The thread is in my inbox only: the peer's inbox does not have it yet.
    expect(await peers.find(peer, directThreadId(me, peer))).toBeUndefined();
  });

  dbTest("keeps a found peer without reading the database again", async ({ databaseUrl }) => {
    const db = open(databaseUrl);
    const [me, peer] = [randomUUID(), randomUUID()];
    await upsertThread(db, privateThread(me, peer));
    const peers = createThreadPeers({ db });
    const threadId = directThreadId(me, peer);
    expect(await peers.find(me, threadId)).toBe(peer);
    // Direct threads are never removed from inboxes; removing the row by hand shows the cache answers.
    await deleteThread(db, me, threadId);
    expect(await peers.find(me, threadId)).toBe(peer);
    expect(peers.size).toBe(1);
  });

  dbTest("does not cache a miss: a thread opened later is found", async ({ databaseUrl }) => {
    const db = open(databaseUrl);
    const [me, peer] = [randomUUID(), randomUUID()];
    const peers = createThreadPeers({ db });
    const threadId = directThreadId(me, peer);
    expect(await peers.find(me, threadId)).toBeUndefined();
    // Opened afterwards (e.g. through another gateway instance).
    await upsertThread(db, privateThread(me, peer));
    expect(await peers.find(me, threadId)).toBe(peer);
  });

  dbTest("does not name a peer for a group thread", async ({ databaseUrl }) => {
    const db = open(databaseUrl);
    const me = randomUUID();
    const groupId = randomUUID();
    await upsertThread(db, {
      ownerAccountId: me,
      threadId: groupId,
      threadType: "group",
      peerAccountId: null,
      activityAt: new Date(),
    });
    const peers = createThreadPeers({ db });
    expect(await peers.find(me, groupId)).toBeUndefined();
    expect(peers.size).toBe(0);
  });

  dbTest("evicts the oldest entry beyond maxEntries", async ({ databaseUrl }) => {
    const db = open(databaseUrl);
    const me = randomUUID();
    const others = [randomUUID(), randomUUID(), randomUUID()];
    for (const p of others) await upsertThread(db, privateThread(me, p));
    const peers = createThreadPeers({ db, maxEntries: 2 });
    for (const p of others) expect(await peers.find(me, directThreadId(me, p))).toBe(p);
    expect(peers.size).toBe(2);
    // The first entry was evicted: its row is read again (and is gone now).
    await deleteThread(db, me, directThreadId(me, others[0] as string));
    expect(await peers.find(me, directThreadId(me, others[0] as string))).toBeUndefined();
    expect(await peers.find(me, directThreadId(me, others[2] as string))).toBe(others[2]);
  });
});
