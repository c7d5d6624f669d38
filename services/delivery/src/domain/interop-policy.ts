// The third-party opt-in (issue 10, docs/interop.md): accounts of our own apps are invisible to
// third-party providers and their users unless they opted in (`accounts.third_party_reachable`).
// Hidden means "does not exist" to them: resolving finds nothing, sends answer like an unknown
// recipient, group adds fail like an unknown account. Our users can always reach provider users.
import { App } from "@switchboard/proto";
import { findRevokedProviders, findUnreachableFromThirdParty, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";

/** True for a provider (or one of its devices) acting: app APP_THIRD_PARTY. */
export const isThirdParty = (actor: { app: App }): boolean => actor.app === App.THIRD_PARTY;

/** Which accounts a batch of sends must treat as not existing for their sender. */
export interface InteropPolicy {
  /** True when `accountId` is an account of our apps hidden from this (third-party) sender. */
  hides(sender: { app: App }, accountId: string): boolean;
  /**
   * True when the sender's provider was revoked after its device authenticated (an open stream):
   * the send fails UNAUTHENTICATED (CREDENTIALS_REVOKED) instead of being stored.
   */
  revoked(sender: { providerId: string }): boolean;
}

const NOTHING_HIDDEN: InteropPolicy = { hides: () => false, revoked: () => false };

/**
 * Loads the opt-in state of every account a third-party sender in the batch addresses (the
 * direct recipient, or every member of the group) and whether those senders' providers were
 * revoked: two queries in parallel, none at all when no sender in the batch is third-party.
 */
export async function loadInteropPolicy(
  db: Kysely<Database>,
  sends: ReadonlyArray<
    | { kind: "direct"; sender: { app: App; providerId: string }; destinationAccountId: string }
    | { kind: "group"; sender: { app: App; providerId: string }; groupId: string }
  >,
  membersOfGroups: ReadonlyMap<string, readonly string[]>,
): Promise<InteropPolicy> {
  const addressed = new Set<string>();
  const providers = new Set<string>();
  for (const s of sends) {
    if (!isThirdParty(s.sender)) continue;
    providers.add(s.sender.providerId);
    if (s.kind === "direct") addressed.add(s.destinationAccountId);
    else for (const a of membersOfGroups.get(s.groupId) ?? []) addressed.add(a);
  }
  if (providers.size === 0) return NOTHING_HIDDEN;
  const [hidden, revoked] = await Promise.all([
    findUnreachableFromThirdParty(db, [...addressed], App.THIRD_PARTY),
    findRevokedProviders(db, [...providers]),
  ]);
  if (hidden.size === 0 && revoked.size === 0) return NOTHING_HIDDEN;
  return {
    hides: (sender, accountId) => isThirdParty(sender) && hidden.has(accountId),
    revoked: (sender) => sender.providerId !== "" && revoked.has(sender.providerId),
  };
}

/**
 * Of `accountIds`, those hidden from `actor`: none unless the actor is third-party, else the
 * accounts of our apps that have not opted in. One query (none for our own apps' actors).
 */
export async function findHiddenAccounts(
  db: Kysely<Database>,
  actor: { app: App },
  accountIds: readonly string[],
): Promise<Set<string>> {
  if (!isThirdParty(actor) || accountIds.length === 0) return new Set();
  return findUnreachableFromThirdParty(db, accountIds, App.THIRD_PARTY);
}
