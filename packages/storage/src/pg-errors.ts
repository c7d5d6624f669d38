/** SQLSTATE of an error thrown by node-postgres, if it is one. */
export function pgErrorCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = err.code;
    return typeof code === "string" && code.length === 5 ? code : undefined;
  }
  return undefined;
}

/** True for 23505 unique_violation. */
export const isUniqueViolation = (err: unknown): boolean => pgErrorCode(err) === "23505";

/**
 * True for errors that mean "try the whole transaction again": serialization failure (40001)
 * and deadlock (40P01).
 */
export const isRetryableTransactionError = (err: unknown): boolean => {
  const code = pgErrorCode(err);
  return code === "40001" || code === "40P01";
};

/**
 * True when the database cannot be reached or is shutting down: connection errors (08xxx),
 * admin shutdown (57P01..57P03), too many connections (53300), and node-level socket errors.
 */
export function isUnavailableError(err: unknown): boolean {
  // Connecting to "localhost" tries several addresses: Node reports all failures together.
  if (err instanceof AggregateError) return err.errors.length > 0 && err.errors.every(isUnavailableError);
  const code = pgErrorCode(err);
  if (code !== undefined) {
    return (
      code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300"
    );
  }
  if (err instanceof Error) {
    const sysCode = (err as NodeJS.ErrnoException).code;
    if (
      sysCode === "ECONNREFUSED" ||
      sysCode === "ECONNRESET" ||
      sysCode === "EPIPE" ||
      sysCode === "ETIMEDOUT"
    ) {
      return true;
    }
    return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(
      err.message,
    );
  }
  return false;
}
