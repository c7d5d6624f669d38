// Bearer-token authentication of Instagram-style devices (tokens issued by this gateway).
import { AppError, Code } from "@switchboard/errors";
import type { FastifyRequest } from "fastify";
import type { Kysely } from "kysely";
import { tokenDigest } from "../domain/tokens.js";
import type { IgDatabase } from "../storage/schema.js";
import { findTokenPrincipal, type TokenPrincipal } from "../storage/token-repository.js";

/** The device a request acts as. */
export type Principal = TokenPrincipal;

/** Authenticates requests by access token. */
export interface Authenticator {
  /** The request's device; fails UNAUTHENTICATED (MISSING_TOKEN, INVALID_TOKEN). */
  authenticate(request: FastifyRequest, opts?: { allowQueryToken?: boolean }): Promise<Principal>;
  /** Drops cached tokens of a device (after revoking them in the database). */
  forgetDevice(principal: Principal): void;
}

const CACHE_TTL_MS = 60_000;
const MAX_CACHED = 100_000;

/**
 * Creates the authenticator. Verified tokens are cached by digest for a minute, so a revoked
 * token keeps working on other instances for at most that long.
 */
export function createAuthenticator(deps: { db: Kysely<IgDatabase> }): Authenticator {
  const cache = new Map<string, { principal: Principal; expiresAt: number }>();

  function tokenOf(request: FastifyRequest, allowQuery: boolean): string | undefined {
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match)
        throw new AppError(
          Code.Unauthenticated,
          "MALFORMED_AUTHORIZATION",
          "expected Authorization: Bearer <token>",
        );
      return match[1];
    }
    if (allowQuery) {
      const q = (request.query as { access_token?: unknown } | undefined)?.access_token;
      if (typeof q === "string" && q !== "") return q;
    }
    return undefined;
  }

  return {
    async authenticate(request, opts = {}) {
      const token = tokenOf(request, opts.allowQueryToken === true);
      if (token === undefined)
        throw new AppError(Code.Unauthenticated, "MISSING_TOKEN", "an access token is required");
      const digest = tokenDigest(token);
      const key = digest.toString("base64");
      const now = Date.now();
      const hit = cache.get(key);
      if (hit && hit.expiresAt > now) return hit.principal;
      const principal = await findTokenPrincipal(deps.db, digest);
      if (principal === undefined) {
        cache.delete(key);
        throw new AppError(Code.Unauthenticated, "INVALID_TOKEN", "the access token is not valid");
      }
      if (cache.size >= MAX_CACHED) cache.clear();
      cache.set(key, { principal, expiresAt: now + CACHE_TTL_MS });
      return principal;
    },
    forgetDevice(principal) {
      for (const [k, v] of cache)
        if (v.principal.accountId === principal.accountId && v.principal.deviceId === principal.deviceId)
          cache.delete(k);
    },
  };
}
