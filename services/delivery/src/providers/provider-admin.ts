// The provider registry's administration (issue 10): add, revoke and list third-party
// providers. Used by the `provider` CLI (src/provider-cli.ts) and by tests.
import { createHash, randomBytes } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import {
  insertProvider,
  listProviders,
  revokeProvider,
  type Database,
  type ProviderRow,
} from "@switchboard/storage";
import type { Kysely } from "kysely";

/** A provider id: what its users' handles carry as `provider_id` (and APP_TOKENS' `provider:<id>`). */
export const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** Longest display name, in bytes. */
export const MAX_PROVIDER_NAME_BYTES = 100;

/** A provider as the CLI shows it (never with its token or hash). */
export interface ProviderSummary {
  id: string;
  displayName: string;
  createdAt: Date;
  revokedAt: Date | null;
}

const summary = (r: ProviderRow): ProviderSummary => ({
  id: r.id,
  displayName: r.display_name,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

/** SHA-256 of a bearer token: what the registry stores and the authenticator looks up. */
export const hashProviderToken = (token: string): Buffer => createHash("sha256").update(token).digest();

/**
 * Registers a provider and returns its new bearer token (`sbp_` + 32 random bytes, base64url).
 * Only the token's SHA-256 is stored: show the token once, it cannot be recovered. Throws
 * INVALID_ARGUMENT (INVALID_PROVIDER_ID, INVALID_PROVIDER_NAME) or ALREADY_EXISTS (PROVIDER_EXISTS).
 */
export async function addProvider(
  db: Kysely<Database>,
  p: { id: string; displayName: string },
): Promise<{ provider: ProviderSummary; token: string }> {
  if (!PROVIDER_ID.test(p.id))
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_PROVIDER_ID",
      "a provider id is 1-32 characters [a-z0-9-], starting with a letter or digit",
    );
  const name = p.displayName.trim();
  if (name.length === 0 || Buffer.byteLength(name) > MAX_PROVIDER_NAME_BYTES)
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_PROVIDER_NAME",
      `a display name is 1-${MAX_PROVIDER_NAME_BYTES} bytes`,
    );
  const token = `sbp_${randomBytes(32).toString("base64url")}`;
  const row = await insertProvider(db, { id: p.id, displayName: name, tokenHash: hashProviderToken(token) });
  return { provider: summary(row), token };
}

/**
 * Revokes a provider's token: every later call with it fails UNAUTHENTICATED
 * (CREDENTIALS_REVOKED) at once. Its accounts and their queued messages stay. Throws NOT_FOUND
 * (PROVIDER_NOT_FOUND) for an unknown id; revoking twice keeps the first revocation time.
 */
export async function revokeProviderById(db: Kysely<Database>, id: string): Promise<ProviderSummary> {
  const row = await revokeProvider(db, id, new Date());
  if (!row) throw new AppError(Code.NotFound, "PROVIDER_NOT_FOUND", `provider ${id} not found`);
  return summary(row);
}

/** Every registered provider, revoked ones included, ordered by id. */
export async function listProviderSummaries(db: Kysely<Database>): Promise<ProviderSummary[]> {
  return (await listProviders(db)).map(summary);
}
