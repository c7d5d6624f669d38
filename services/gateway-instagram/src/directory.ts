// Resolving user refs to accounts (through the delivery service's directory) and naming accounts
// by ref. Handles never change, so account id → ref is cached for the life of the process.
import { AppError, Code } from "@switchboard/errors";
import type { AccountWithDevices, App } from "@switchboard/proto";
import type { DeliveryLink } from "@switchboard/delivery-link";
import { parseUserRef, refOfHandle } from "./domain/refs.js";

const MAX_CACHED_REFS = 100_000;

/** Resolves refs and names accounts. */
export interface Directory {
  /** The account a ref names (with its current devices), or undefined. Fails INVALID_ARGUMENT for a malformed ref. */
  findByRef(ref: string): Promise<AccountWithDevices | undefined>;
  /** Like findByRef, but fails NOT_FOUND (USER_NOT_FOUND). */
  getByRef(ref: string): Promise<AccountWithDevices>;
  /** The account with its current devices, or undefined. */
  findAccount(accountId: string): Promise<AccountWithDevices | undefined>;
  /** The cached ref of an account, if known. */
  cachedRef(accountId: string): string | undefined;
  /** The ref of an account (looked up once), or undefined for an unknown account. */
  refOf(accountId: string): Promise<string | undefined>;
  /** Remembers an account's handle. */
  remember(account: { id: string; handle?: { app: App; value: string; providerId: string } }): void;
}

/** Creates the directory over the delivery link's DirectoryService client (app credential). */
export function createDirectory(link: Pick<DeliveryLink, "directory">): Directory {
  const refs = new Map<string, string>();
  const remember: Directory["remember"] = (account) => {
    if (account.handle === undefined || refs.has(account.id)) return;
    if (refs.size >= MAX_CACHED_REFS) {
      const oldest = refs.keys().next().value;
      if (oldest !== undefined) refs.delete(oldest);
    }
    refs.set(account.id, refOfHandle(account.handle));
  };

  async function findAccount(accountId: string): Promise<AccountWithDevices | undefined> {
    const r = await link.directory.getAccount({ accountId });
    if (r.result.case !== "found") return undefined;
    if (r.result.value.account) remember(r.result.value.account);
    return r.result.value;
  }

  async function findByRef(ref: string): Promise<AccountWithDevices | undefined> {
    const parsed = parseUserRef(ref);
    if (parsed === undefined)
      throw new AppError(Code.InvalidArgument, "INVALID_USER_REF", `"${ref}" is not a user ref`);
    if (parsed.kind === "account") return findAccount(parsed.accountId);
    const r = await link.directory.resolveHandle({
      handle: { app: parsed.app, value: parsed.value, providerId: parsed.providerId },
    });
    if (r.result.case !== "found") return undefined;
    if (r.result.value.account) remember(r.result.value.account);
    return r.result.value;
  }

  return {
    findByRef,
    async getByRef(ref) {
      const found = await findByRef(ref);
      if (found?.account === undefined) throw new AppError(Code.NotFound, "USER_NOT_FOUND", `no user ${ref}`);
      return found;
    },
    findAccount,
    cachedRef: (accountId) => refs.get(accountId),
    async refOf(accountId) {
      const cached = refs.get(accountId);
      if (cached !== undefined) return cached;
      await findAccount(accountId);
      return refs.get(accountId);
    },
    remember,
  };
}
