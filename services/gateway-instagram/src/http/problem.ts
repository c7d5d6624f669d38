// RFC 9457 problem details: the one error handler of the HTTP API.
import { AppError, Code, codeName, httpStatusOf, isAppError } from "@switchboard/errors";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** An AppError with extra problem members (e.g. the device lists of DEVICES_CHANGED). */
export class ProblemError extends AppError {
  constructor(
    code: Code,
    reason: string,
    message: string,
    readonly extensions: Record<string, unknown>,
  ) {
    super(code, reason, message);
  }
}

/** The JSON schema of a problem response (extension members allowed). */
export const problemSchema = {
  $id: "Problem",
  type: "object",
  description: "An RFC 9457 problem (application/problem+json).",
  properties: {
    type: { type: "string", description: "A URI reference naming the problem type (/errors/<reason>)." },
    title: { type: "string" },
    status: { type: "integer" },
    detail: { type: "string" },
    reason: { type: "string", description: "Stable machine-readable reason, UPPER_SNAKE_CASE." },
    requestId: { type: "string" },
    errors: {
      type: "array",
      description: "Schema violations (INVALID_ARGUMENT only).",
      items: {
        type: "object",
        properties: { path: { type: "string" }, message: { type: "string" } },
      },
    },
  },
  required: ["type", "title", "status", "reason"],
  additionalProperties: true,
} as const;

const titleOf = (reason: string) => {
  const words = reason.toLowerCase().split("_").join(" ");
  return words.charAt(0).toUpperCase() + words.slice(1);
};

function send(reply: FastifyReply, request: FastifyRequest, status: number, body: Record<string, unknown>) {
  const problem = { ...body, status, requestId: request.id };
  return reply.code(status).type("application/problem+json").send(problem);
}

interface ValidationIssue {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/**
 * Installs the error and not-found handlers: AppError → its status and reason (429 and 503 with
 * `Retry-After`, in whole seconds); schema failures → 400 INVALID_ARGUMENT with `errors`; anything
 * else → 500 INTERNAL with the details logged only.
 */
export function registerProblemHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    if (isAppError(err)) {
      const status = httpStatusOf(err.code);
      const log = status >= 500 ? request.log.error.bind(request.log) : request.log.info.bind(request.log);
      log({ err, reason: err.reason }, "request failed");
      // 429 and 503 always tell the client when to retry (at least a second): the delivery
      // service's hint (RATE_LIMITED's RetryInfo) when there is one, else one second.
      const retryAfterMs =
        err.retryAfterMs ??
        (err.code === Code.ResourceExhausted || err.code === Code.Unavailable ? 1000 : undefined);
      if (retryAfterMs !== undefined)
        void reply.header("retry-after", Math.max(1, Math.ceil(retryAfterMs / 1000)));
      return send(reply, request, status, {
        ...err.metadata,
        ...(err instanceof ProblemError ? err.extensions : {}),
        type: `/errors/${err.reason.toLowerCase().replaceAll("_", "-")}`,
        title: titleOf(err.reason),
        detail: err.message,
        reason: err.reason,
        code: codeName(err.code),
      });
    }
    const fe = err as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
    if (fe.validation) {
      return send(reply, request, 400, {
        type: "/errors/invalid-argument",
        title: "Invalid argument",
        detail: fe.message,
        reason: "INVALID_ARGUMENT",
        code: "INVALID_ARGUMENT",
        errors: fe.validation.map((v) => ({
          path: `${fe.validationContext ?? ""}${v.instancePath ?? ""}${
            typeof v.params?.missingProperty === "string" ? `/${v.params.missingProperty}` : ""
          }`,
          message: v.message ?? "invalid",
        })),
      });
    }
    const status =
      typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
    if (status < 500) {
      // Fastify's own client errors (malformed JSON, body too large, unsupported media type).
      const reason = fe.code === "FST_ERR_CTP_BODY_TOO_LARGE" ? "PAYLOAD_TOO_LARGE" : "INVALID_ARGUMENT";
      request.log.info({ err, reason }, "request failed");
      return send(reply, request, status, {
        type: `/errors/${reason.toLowerCase().replaceAll("_", "-")}`,
        title: titleOf(reason),
        detail: fe.message,
        reason,
        code: "INVALID_ARGUMENT",
      });
    }
    request.log.error({ err }, "internal error");
    return send(reply, request, 500, {
      type: "/errors/internal",
      title: "Internal",
      detail: "internal error",
      reason: "INTERNAL",
      code: "INTERNAL",
    });
  });

  app.setNotFoundHandler((request, reply) =>
    send(reply, request, 404, {
      type: "/errors/route-not-found",
      title: "Route not found",
      detail: `no route ${request.method} ${request.url.split("?")[0] ?? ""}`,
      reason: "ROUTE_NOT_FOUND",
      code: "NOT_FOUND",
    }),
  );
}
