/**
 * The gRPC canonical status codes (numerically identical to grpc-js `status`), used as the one
 * closed set of error codes across Switchboard. Each edge maps them once: gRPC status, HTTP status.
 */
export enum Code {
  Canceled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

const CODE_NAMES: Record<Code, string> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

const HTTP_STATUS: Record<Code, number> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** The canonical upper-case name of a code, e.g. `NOT_FOUND`. */
export function codeName(code: Code): string {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/** The HTTP status an edge renders for a code (see STYLE.md's table). */
export function httpStatusOf(code: Code): number {
  return HTTP_STATUS[code] ?? 500;
}

/** Optional extras an error carries to the edge. */
export interface AppErrorDetails {
  /** Underlying error; logged, never sent to clients. */
  cause?: unknown;
  /** Structured, client-safe metadata (rendered as ErrorInfo metadata / problem members). */
  metadata?: Record<string, string>;
  /** For RESOURCE_EXHAUSTED and UNAVAILABLE: when the client may retry. */
  retryAfterMs?: number;
}

/**
 * The one error type of Switchboard: a canonical code, a stable machine-readable `reason`
 * (`UPPER_SNAKE_CASE`, e.g. `DEVICE_NOT_FOUND`) and a client-safe message.
 */
export class AppError extends Error {
  override readonly name = "AppError";
  readonly metadata: Record<string, string>;
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly code: Code,
    readonly reason: string,
    message: string,
    details: AppErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.metadata = details.metadata ?? {};
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** Narrow an unknown thrown value to `AppError`. */
export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
