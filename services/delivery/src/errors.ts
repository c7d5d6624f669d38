import { AppError, Code } from "@switchboard/errors";
import { isUnavailableError } from "@switchboard/storage";

/**
 * The delivery service's translation of non-AppErrors at its edges (gRPC statuses and stream
 * frame errors): PostgreSQL being unreachable is UNAVAILABLE with a retry hint, so clients retry
 * instead of treating it as a bug. Anything else stays INTERNAL.
 */
export function translateError(err: unknown): AppError | undefined {
  if (isUnavailableError(err)) {
    return new AppError(Code.Unavailable, "DATABASE_UNAVAILABLE", "message store unavailable; retry", {
      cause: err,
      retryAfterMs: 1_000,
    });
  }
  return undefined;
}
