// Access tokens: issued at signup and device registration, stored as SHA-256 digests in ms_tokens,
// checked on every request (with a short in-memory cache) and revoked with their device.
import { AppError, Code } from "@switchboard/errors";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Kysely } from "kysely";
import { digestToken, bearerToken, generateToken } from "../domain/tokens.js";
import { TtlCache } from "../domain/ttl-cache.js";
import type { GatewayDatabase } from "../storage/schema.js";
import { deleteDeviceTokens, findToken, insertToken } from "../storage/token-repository.js";

/** The authenticated device of a request. */
export interface Principal {
  /** Service-wide account id. */
  accountId: string;
  deviceId: number;
  /** The numeric user id ("100004"). */
  userId: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the authentication hook on authenticated routes. */
    principal: Principal | null;
  }
}

/** Issues, checks and revokes access tokens. */
export interface Authenticator {
  /** Issues a token for a device and stores its digest. */
  issue(principal: Principal): Promise<string>;
  /** The device a token belongs to; fails UNAUTHENTICATED (INVALID_TOKEN). */
  verify(token: string): Promise<Principal>;
  /** Deletes every token of a device. */
  revokeDevice(accountId: string, deviceId: number): Promise<void>;
  /** A fastify hook authenticating by `Authorization: Bearer` (or `?access_token=` when allowed). */
  hook(opts?: { allowQueryToken?: boolean }): (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

const CACHE_TTL_MS = 60_000;
const CACHE_ENTRIES = 100_000;

/** Creates the authenticator over the gateway database. */
export function createAuthenticator(deps: { db: Kysely<GatewayDatabase> }): Authenticator {
  const cache = new TtlCache<string, Principal>(CACHE_ENTRIES, CACHE_TTL_MS);
  const invalid = () => new AppError(Code.Unauthenticated, "INVALID_TOKEN", "the access token is not valid");

  const auth: Authenticator = {
    async issue(principal) {
      const token = generateToken();
      await insertToken(deps.db, { digest: digestToken(token), ...principal });
      return token;
    },
    async verify(token) {
      const digest = digestToken(token);
      const key = digest.toString("base64");
      const cached = cache.get(key);
      if (cached !== undefined) return cached;
      const row = await findToken(deps.db, digest);
      if (row === undefined) throw invalid();
      const principal = { accountId: row.account_id, deviceId: row.device_id, userId: row.user_id };
      cache.set(key, principal);
      return principal;
    },
    async revokeDevice(accountId, deviceId) {
      for (const digest of await deleteDeviceTokens(deps.db, accountId, deviceId))
        cache.delete(digest.toString("base64"));
    },
    hook(opts = {}) {
      return async (request) => {
        const header = request.headers.authorization;
        let token = bearerToken(header);
        if (token === undefined && header === undefined && opts.allowQueryToken === true) {
          const q = (request.query as { access_token?: unknown } | undefined)?.access_token;
          if (typeof q === "string" && /^[A-Za-z0-9_-]{16,128}$/.test(q)) token = q;
        }
        if (token === undefined) {
          throw new AppError(
            Code.Unauthenticated,
            header === undefined ? "MISSING_TOKEN" : "INVALID_TOKEN",
            header === undefined
              ? "an access token is required: Authorization: Bearer <token>"
              : "malformed Authorization header",
          );
        }
        request.principal = await auth.verify(token);
      };
    },
  };
  return auth;
}

/** The request's principal; only called on authenticated routes. */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null)
    throw new AppError(Code.Unauthenticated, "MISSING_TOKEN", "not authenticated");
  return request.principal;
}
