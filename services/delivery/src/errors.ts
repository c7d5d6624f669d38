import { AppError, Code } from "@switchboard/errors";
import { isUnavailableError, pgErrorCode } from "@switchboard/storage";

/**
 * The delivery service's translation of non-AppErrors at its edges (gRPC statuses and stream
 * frame errors): PostgreSQL being unreachable is UNAVAILABLE with a retry hint, so clients retry
 * instead of treating it as a bug. A PostgreSQL data exception (SQLSTATE class 22: an id that is
 * not a UUID, a NUL byte in text, a number out of range) can only come from a client's value that
 * validation let through: INVALID_ARGUMENT (INVALID_VALUE), as the fuzz suite requires, rather
 * than INTERNAL. Anything else stays INTERNAL.
 */
export function translateError(err: unknown): AppError | undefined {
  if (isUnavailableError(err)) {
    return new AppError(Code.Unavailable, "DATABASE_UNAVAILABLE", "message store unavailable; retry", {
      cause: err,
      retryAfterMs: 1_000,
    });
  }
  if (pgErrorCode(err)?.startsWith("22")) {
    return new AppError(
      Code.InvalidArgument,
      "INVALID_VALUE",
      "a field holds a value the store cannot accept",
      {
        cause: err,
      },
    );
  }
  return undefined;
}
