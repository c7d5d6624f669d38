import { AppError, Code } from "@switchboard/errors";

/** The error `publish`/`subscribe` reject with when Redis does not answer: UNAVAILABLE `FANOUT_UNAVAILABLE`. */
export function fanoutUnavailable(message: string, cause?: unknown): AppError {
  return new AppError(Code.Unavailable, "FANOUT_UNAVAILABLE", message, { cause });
}

/** The error every call after `close()` rejects with: FAILED_PRECONDITION `FANOUT_CLOSED`. */
export function fanoutClosed(): AppError {
  return new AppError(Code.FailedPrecondition, "FANOUT_CLOSED", "fanout is closed");
}

/** Translate an unknown failure of a Redis call into `FANOUT_UNAVAILABLE`, keeping an `AppError` as is. */
export function toFanoutError(err: unknown, message: string): AppError {
  return err instanceof AppError ? err : fanoutUnavailable(message, err);
}
