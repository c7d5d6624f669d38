// Handle ⇄ account id lookups through the delivery service's DirectoryService, cached. Both are
// immutable for an account's lifetime, so positive answers are kept (LRU-bounded); "not found"
// is never cached, since the handle may be registered later.
import type { DeliveryLink } from "@switchboard/delivery-link";
import type { Account, AccountWithDevices, Handle } from "@switchboard/proto";
import { handleKey } from "./domain/jid.js";

/** Cached directory lookups. */
export interface Directory {
  /** The account id of a handle, or undefined when no account has it. */
  findAccountId(handle: Handle): Promise<string | undefined>;
  /** The account and its current devices (always asked afresh; refreshes the cache). */
  resolve(handle: Handle): Promise<AccountWithDevices | undefined>;
  /** The handle of an account id, or undefined when unknown. */
  findHandle(accountId: string): Promise<Handle | undefined>;
  /** Caches an account seen in another response (a group's members, a registration). */
  remember(account: Account | undefined): void;
}

class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, v: V): void {
    this.map.delete(key);
    this.map.set(key, v);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
  }
}

/** Creates the directory over the link's DirectoryService client; `maxEntries` per direction. */
export function createDirectory(link: Pick<DeliveryLink, "directory">, maxEntries = 100_000): Directory {
  const ids = new Lru<string>(maxEntries);
  const handles = new Lru<Handle>(maxEntries);
  const remember = (account: Account | undefined) => {
    if (!account?.handle || account.id === "") return;
    ids.set(handleKey(account.handle), account.id);
    handles.set(account.id, account.handle);
  };
  const resolve = async (handle: Handle) => {
    const r = await link.directory.resolveHandle({ handle });
    if (r.result.case !== "found") return undefined;
    remember(r.result.value.account);
    return r.result.value;
  };
  return {
    async findAccountId(handle) {
      return ids.get(handleKey(handle)) ?? (await resolve(handle))?.account?.id;
    },
    resolve,
    async findHandle(accountId) {
      const cached = handles.get(accountId);
      if (cached) return cached;
      const r = await link.directory.getAccount({ accountId });
      if (r.result.case !== "found") return undefined;
      remember(r.result.value.account);
      return r.result.value.account?.handle;
    },
    remember,
  };
}
