// Problems for the errors fastify answers outside the error handler: a URL it cannot route (a
// path parameter over maxParamLength, a malformed percent-encoding) and requests the HTTP parser
// rejects before fastify sees them (headers over Node's limit, a malformed request line). Without
// these, such requests got fastify's plain `application/json` bodies instead of RFC 9457 problems.
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyReply, FastifyRequest, FastifyServerOptions } from "fastify";

const problem = (status: number, reason: string, detail: string, requestId?: string) => ({
  type: `/errors/${reason.toLowerCase().replaceAll("_", "-")}`,
  title: STATUS_CODES[status] ?? "Bad Request",
  status,
  detail,
  reason,
  code: "INVALID_ARGUMENT",
  ...(requestId === undefined ? {} : { requestId }),
});

/** `frameworkErrors`: routing failures (414 URL_TOO_LONG, 400 BAD_URL) as problem documents. */
export function frameworkErrors(
  error: Error & { code?: string },
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const tooLong = error.code === "FST_ERR_MAX_PARAM_LENGTH";
  const body = tooLong
    ? problem(414, "URL_TOO_LONG", "a path parameter exceeds the maximum length", request.id)
    : problem(400, "BAD_URL", "the URL is not valid (malformed percent-encoding?)", request.id);
  request.log.info({ reason: body.reason, status: body.status }, "request rejected");
  void reply.code(body.status).type("application/problem+json").send(JSON.stringify(body));
}

/** `clientErrorHandler`: parser-level rejections (431 HEADERS_TOO_LARGE, 408, 400) as problem documents. */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const body =
    error.code === "HPE_HEADER_OVERFLOW"
      ? problem(431, "HEADERS_TOO_LARGE", "request headers exceed the server's limit")
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? problem(408, "REQUEST_TIMEOUT", "the request was not received in time")
        : problem(400, "BAD_REQUEST", "the request could not be parsed as HTTP");
  const json = JSON.stringify(body);
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${body.status} ${body.title}\r\nContent-Type: application/problem+json\r\n` +
        `Content-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`,
    );
  socket.destroy(error);
}

/** The fastify options that install both handlers. */
export const transportErrorOptions: Pick<FastifyServerOptions, "frameworkErrors" | "clientErrorHandler"> = {
  frameworkErrors,
  clientErrorHandler,
};
