// The peer of a one-to-one thread in an owner's inbox, cached. A direct thread's id is derived
// from its two accounts (domain/thread-id.ts) and its inbox row is never deleted (only group
// threads are left), so once found, the peer of (owner, thread) never changes: found peers are
// kept (bounded, oldest evicted), while a miss is always asked afresh (the thread may be opened
// later, on any instance). This saves a database read on every item sent to a direct thread.
import type { Kysely } from "kysely";
import type { IgDatabase } from "./schema.js";
import { findThread } from "./thread-repository.js";

const DEFAULT_MAX_ENTRIES = 200_000;

/** Peers of the one-to-one threads in inboxes. */
export interface ThreadPeers {
  /**
   * The peer account of `threadId` in `ownerAccountId`'s inbox, or undefined when the inbox has no
   * such one-to-one thread (not opened yet, or a group thread).
   */
  find(ownerAccountId: string, threadId: string): Promise<string | undefined>;
  /** Entries held (for tests and metrics). */
  readonly size: number;
}

/** Creates the cache over `ig_threads`; `maxEntries` bounds it (default 200,000). */
export function createThreadPeers(deps: { db: Kysely<IgDatabase>; maxEntries?: number }): ThreadPeers {
  const max = deps.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const peers = new Map<string, string>();
  return {
    async find(ownerAccountId, threadId) {
      const key = `${ownerAccountId}/${threadId}`;
      const cached = peers.get(key);
      if (cached !== undefined) return cached;
      const row = await findThread(deps.db, ownerAccountId, threadId);
      const peer = row?.peer_account_id ?? undefined;
      if (peer === undefined) return undefined;
      if (peers.size >= max) {
        const oldest = peers.keys().next().value;
        if (oldest !== undefined) peers.delete(oldest);
      }
      peers.set(key, peer);
      return peer;
    },
    get size() {
      return peers.size;
    },
  };
}
