import { createHash, timingSafeEqual } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import type { Authenticator } from "./principal.js";

/** Checks that a call carries the operator's moderator credential. */
export interface ModeratorGate {
  /**
   * Resolves when `authorization` is `Bearer <MODERATOR_TOKEN>`. Any other valid credential
   * (device, gateway app token, third-party provider) fails PERMISSION_DENIED (NOT_A_MODERATOR);
   * a missing, malformed or unknown one fails UNAUTHENTICATED as everywhere else.
   */
  requireModerator(metadata: Metadata): Promise<void>;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest();

/**
 * Creates the moderator gate. Only the token's SHA-256 is kept (in memory; it is never stored or
 * logged), compared in constant time. Without a token (MODERATOR_TOKEN unset) the moderation API
 * admits nobody.
 */
export function createModeratorGate(deps: { token: string | undefined; auth: Authenticator }): ModeratorGate {
  const digest = deps.token === undefined ? undefined : sha256(deps.token);
  return {
    async requireModerator(metadata) {
      const header = metadata.get("authorization")[0];
      if (digest && typeof header === "string" && header.length <= 1024) {
        const space = header.indexOf(" ");
        if (space > 0 && header.slice(0, space).toLowerCase() === "bearer") {
          if (timingSafeEqual(sha256(header.slice(space + 1).trim()), digest)) return;
        }
      }
      // Not the moderator: authenticate as usual, so an unknown credential is UNAUTHENTICATED and
      // a valid one of anybody else is refused with PERMISSION_DENIED.
      const principal = await deps.auth.authenticate(metadata);
      throw new AppError(
        Code.PermissionDenied,
        "NOT_A_MODERATOR",
        `the moderation API takes only the operator's moderator credential, not ${
          principal.kind === "device" ? "a device credential" : "an app credential"
        }${digest ? "" : " (MODERATOR_TOKEN is not set on this server)"}`,
      );
    },
  };
}
