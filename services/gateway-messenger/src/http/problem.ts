// RFC 9457 problem details: the one rendering of every error this API returns, over HTTP (the
// fastify error handler) and over the WebSocket (`{"type":"error","problem":{...}}`).
import {
  AppError,
  Code,
  codeName,
  httpStatusOf,
  isAppError,
  type AppErrorDetails,
} from "@switchboard/errors";
import type { FastifyError, FastifyInstance } from "fastify";

/** An AppError that adds members to its problem document (e.g. `missing`/`extra`/`stale`). */
export class ProblemError extends AppError {
  constructor(
    code: Code,
    reason: string,
    message: string,
    readonly extensions: Record<string, unknown>,
    details?: AppErrorDetails,
  ) {
    super(code, reason, message, details);
  }
}

/** A problem document (`application/problem+json`). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** Stable machine-readable reason (UPPER_SNAKE_CASE). */
  reason: string;
  /** The canonical code name (INVALID_ARGUMENT, NOT_FOUND, ...). */
  code: string;
  requestId?: string;
  [extension: string]: unknown;
}

const TITLES: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "Invalid argument",
  [Code.FailedPrecondition]: "Failed precondition",
  [Code.Unauthenticated]: "Unauthenticated",
  [Code.PermissionDenied]: "Permission denied",
  [Code.NotFound]: "Not found",
  [Code.AlreadyExists]: "Already exists",
  [Code.Aborted]: "Conflict",
  [Code.ResourceExhausted]: "Resource exhausted",
  [Code.Unavailable]: "Service unavailable",
  [Code.DeadlineExceeded]: "Deadline exceeded",
  [Code.Canceled]: "Cancelled",
  [Code.Unimplemented]: "Not implemented",
  [Code.Internal]: "Internal error",
};

/** The problem `type` URI of a reason: `/errors/devices-changed`. */
export const problemType = (reason: string): string => `/errors/${reason.toLowerCase().replaceAll("_", "-")}`;

/** Renders an AppError (with its extensions) as a problem document. */
export function problemOf(err: AppError, requestId?: string, status = httpStatusOf(err.code)): Problem {
  const internal = err.code === Code.Internal || err.code === Code.Unknown || err.code === Code.DataLoss;
  return {
    ...(err instanceof ProblemError ? err.extensions : {}),
    type: problemType(err.reason),
    title: TITLES[err.code] ?? codeName(err.code),
    status,
    // Internal errors never leak their message.
    detail: internal ? "internal error" : err.message,
    reason: err.reason,
    code: codeName(err.code),
    ...(requestId === undefined ? {} : { requestId }),
  };
}

/** One schema validation error (ajv's shape). */
export interface ValidationItem {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** The INVALID_REQUEST problem of schema validation errors of the request part (or frame) `where`. */
export function validationError(items: readonly ValidationItem[], where: string): ProblemError {
  const errors = items.map((v) => ({
    location: where,
    pointer: v.instancePath === undefined || v.instancePath === "" ? "/" : v.instancePath,
    message: v.message ?? "is invalid",
    ...(v.keyword === undefined ? {} : { keyword: v.keyword }),
    ...(v.params?.missingProperty === undefined ? {} : { property: v.params.missingProperty }),
    ...(v.params?.additionalProperty === undefined ? {} : { property: v.params.additionalProperty }),
  }));
  return new ProblemError(
    Code.InvalidArgument,
    "INVALID_REQUEST",
    `the request ${where} does not match the schema: ${errors.map((e) => `${e.pointer} ${e.message}`).join("; ")}`,
    { errors },
  );
}

/** Maps what fastify and its plugins throw (schema, parser and size errors) to an AppError and HTTP status. */
export function toAppError(err: unknown): { error: AppError; status?: number } {
  if (isAppError(err)) return { error: err };
  const fe = err as Partial<FastifyError> & { validation?: ValidationItem[]; validationContext?: string };
  if (Array.isArray(fe.validation))
    return { error: validationError(fe.validation, fe.validationContext ?? "body") };
  const status = typeof fe.statusCode === "number" ? fe.statusCode : undefined;
  if (status !== undefined && status >= 400 && status < 500) {
    const reason =
      fe.code === "FST_ERR_CTP_BODY_TOO_LARGE"
        ? "BODY_TOO_LARGE"
        : fe.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
          ? "UNSUPPORTED_MEDIA_TYPE"
          : err instanceof SyntaxError || fe.code === "FST_ERR_CTP_INVALID_JSON_BODY"
            ? "INVALID_JSON"
            : fe.code === "FST_ERR_CTP_EMPTY_JSON_BODY"
              ? "EMPTY_BODY"
              : "BAD_REQUEST";
    return {
      error: new AppError(Code.InvalidArgument, reason, fe.message ?? "bad request"),
      status: status === 400 || status === 413 || status === 415 ? status : 400,
    };
  }
  return { error: new AppError(Code.Internal, "INTERNAL", "internal error", { cause: err }) };
}

/**
 * Installs the one error handler (and the not-found handler): every failure becomes an
 * `application/problem+json` response; UNAVAILABLE and RESOURCE_EXHAUSTED carry `Retry-After`.
 * 5xx are logged at error level with the cause, client errors at info.
 */
export function installProblemHandler(app: FastifyInstance): void {
  app.setNotFoundHandler((request) => {
    throw new AppError(
      Code.NotFound,
      "ROUTE_NOT_FOUND",
      `no route ${request.method} ${request.url.split("?")[0]}`,
    );
  });
  app.setErrorHandler((err, request, reply) => {
    const { error, status } = toAppError(err);
    const problem = problemOf(error, request.id, status);
    if (problem.status >= 500)
      request.log.error({ err: error.cause ?? error, reason: error.reason }, "request failed");
    else request.log.info({ reason: error.reason, status: problem.status }, "request rejected");
    const retryAfterMs =
      error.retryAfterMs ??
      (error.code === Code.Unavailable || error.code === Code.ResourceExhausted ? 1000 : undefined);
    if (retryAfterMs !== undefined)
      void reply.header("retry-after", String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
    if (error.code === Code.Unauthenticated)
      void reply.header("www-authenticate", 'Bearer realm="switchboard"');
    // A string body bypasses the route's response schemas: problems have their own.
    return reply.code(problem.status).type("application/problem+json").send(JSON.stringify(problem));
  });
}
