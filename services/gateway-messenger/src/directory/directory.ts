// Directory look-ups through the delivery service, with a cache of the facts that never change:
// which account a handle names, and which handle an account has (handles are not reassigned).
import { AppError, Code } from "@switchboard/errors";
import type { DeliveryLink } from "@switchboard/delivery-link";
import type { Account, AccountWithDevices } from "@switchboard/proto";
import { TtlCache } from "../domain/ttl-cache.js";
import { userFromHandle, userJson, type HandleRef, type Recipient, type UserJson } from "../domain/users.js";

const CACHE_ENTRIES = 50_000;
const CACHE_TTL_MS = 10 * 60_000;
const CALL_DEADLINE_MS = 10_000;

/** Resolves recipients to accounts and accounts to handles. */
export interface Directory {
  /** The account a recipient names, or undefined when no account has that handle. */
  resolve(recipient: Recipient): Promise<string | undefined>;
  /** Like `resolve`, but fails NOT_FOUND (RECIPIENT_NOT_FOUND). */
  require(recipient: Recipient): Promise<string>;
  /** The account with its current devices (not cached: devices change), or undefined. */
  profile(recipient: Recipient): Promise<AccountWithDevices | undefined>;
  /** The account's handle (cached), or undefined when the account is unknown. */
  handleOf(accountId: string): Promise<HandleRef | undefined>;
  /** The account rendered as a user object (with only `account_id` when unknown). */
  userOf(accountId: string): Promise<UserJson>;
  /** Remembers an account seen in a response (group members, look-ups). */
  remember(account: Account | undefined): void;
}

const handleKey = (h: HandleRef) => `${h.app}|${h.providerId}|${h.value.toLowerCase()}`;

/** Creates the directory over the link's unary DirectoryService client. */
export function createDirectory(link: Pick<DeliveryLink, "directory">): Directory {
  const accountOfHandle = new TtlCache<string, string>(CACHE_ENTRIES, CACHE_TTL_MS);
  const handleOfAccount = new TtlCache<string, HandleRef>(CACHE_ENTRIES, CACHE_TTL_MS);
  const opts = { deadlineMs: CALL_DEADLINE_MS };

  const remember = (account: Account | undefined) => {
    const h = account?.handle;
    if (account === undefined || h === undefined || account.id === "") return;
    const handle = { app: h.app, providerId: h.providerId, value: h.value };
    handleOfAccount.set(account.id, handle);
    accountOfHandle.set(handleKey(handle), account.id);
  };

  const lookupHandle = async (handle: HandleRef) => {
    const r = await link.directory.resolveHandle({ handle }, opts);
    if (r.result.case !== "found") return undefined;
    remember(r.result.value.account);
    return r.result.value;
  };

  const lookupAccount = async (accountId: string) => {
    const r = await link.directory.getAccount({ accountId }, opts);
    if (r.result.case !== "found") return undefined;
    remember(r.result.value.account);
    return r.result.value;
  };

  const directory: Directory = {
    async resolve(recipient) {
      if (recipient.kind === "account") return recipient.accountId;
      const cached = accountOfHandle.get(handleKey(recipient.handle));
      if (cached !== undefined) return cached;
      const found = await lookupHandle(recipient.handle);
      if (found?.account === undefined) return undefined;
      // The caller's spelling (e.g. upper-case usernames) maps to the same account.
      accountOfHandle.set(handleKey(recipient.handle), found.account.id);
      return found.account.id;
    },
    async require(recipient) {
      const accountId = await directory.resolve(recipient);
      if (accountId === undefined)
        throw new AppError(Code.NotFound, "RECIPIENT_NOT_FOUND", "no user has this handle");
      return accountId;
    },
    async profile(recipient) {
      return recipient.kind === "account"
        ? lookupAccount(recipient.accountId)
        : lookupHandle(recipient.handle);
    },
    async handleOf(accountId) {
      const cached = handleOfAccount.get(accountId);
      if (cached !== undefined) return cached;
      await lookupAccount(accountId);
      return handleOfAccount.get(accountId);
    },
    async userOf(accountId) {
      const handle = await directory.handleOf(accountId);
      return handle === undefined
        ? userJson(accountId, { app: 0, providerId: "" })
        : userFromHandle(accountId, handle);
    },
    remember,
  };
  return directory;
}
