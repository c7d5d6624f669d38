// What the load generator's lean gRPC clients over node:http2 share (h2-unary.ts for unary sends,
// h2-bidi.ts for the WhatsApp-style Chat stream): the session they reuse, the message framing, and
// the status a finished stream ends with, mapped to the AppError grpc-js and `createClient` give
// (same code, same reason; messages of local failures may differ). Plaintext (h2c) only, no
// compression, no retries.
import http2 from "node:http2";
import { Code } from "@switchboard/errors";
import type { AppError } from "@switchboard/errors";
import { errorFromStatus, STATUS_DETAILS_KEY } from "@switchboard/grpc";

const {
  HTTP2_HEADER_STATUS,
  NGHTTP2_CANCEL,
  NGHTTP2_FLAG_END_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_NO_ERROR,
  NGHTTP2_REFUSED_STREAM,
} = http2.constants;

/** grpc-js's default limit on a received message: a larger one fails RESOURCE_EXHAUSTED. */
export const MAX_RESPONSE_MESSAGE_BYTES = 4 * 1024 * 1024;

/** One HTTP/2 session, and whether it ever connected (grpc-js words a failure by that). */
export interface H2Connection {
  readonly session: http2.ClientHttp2Session;
  connected: boolean;
}

/** The session calls go out on; see {@link createH2Connector}. */
export interface H2Connector {
  /** The current session, opened when there is none (or it closed, failed or got GOAWAY). */
  connection(): H2Connection;
  /** Forgets `conn` if it is current: a session that can no longer start streams. */
  retire(conn: H2Connection): void;
  /** Closes every session once its streams are done; referenced meanwhile, so that the process waits. */
  close(): Promise<void>;
}

/**
 * Sessions to `target` (`host:port`, `[v6]:port`), one at a time: opened on first use and reused
 * until it closes, fails or receives GOAWAY; the next call then opens a new one (a call is never
 * retried). Sessions do not keep the process alive; whatever waits on a call does.
 */
export function createH2Connector(target: string): H2Connector {
  const authority = `http://${target}`;
  const live = new Set<http2.ClientHttp2Session>();
  let current: H2Connection | undefined;
  return {
    connection() {
      // A session can be closing before its events have retired it.
      if (current !== undefined && !current.session.closed && !current.session.destroyed) return current;
      const session = http2.connect(authority, {
        // As grpc-js does: Node degrades badly at its default 10 MB session memory limit.
        maxSessionMemory: Number.MAX_SAFE_INTEGER,
      });
      const conn: H2Connection = { session, connected: false };
      const retire = () => {
        if (current === conn) current = undefined;
      };
      session.once("connect", () => (conn.connected = true));
      // The calls on the session fail through their streams; the next call opens a new session.
      session.on("error", retire);
      session.once("goaway", retire);
      session.once("close", () => {
        retire();
        live.delete(session);
      });
      session.unref();
      live.add(session);
      current = conn;
      return conn;
    },
    retire(conn) {
      if (current === conn) current = undefined;
    },
    async close() {
      current = undefined;
      await Promise.all(
        [...live].map(
          (session) =>
            new Promise<void>((resolve) => {
              session.once("close", () => resolve());
              // Referenced again while closing: an unreferenced session's close would not keep the
              // process alive, and a caller awaiting it (top-level await) would exit unsettled.
              session.ref();
              session.close();
            }),
        ),
      );
    },
  };
}

/** The request headers of a call to `path` with `metadata` (lower-case ASCII header names). */
export function requestHeaders(path: string, metadata: Record<string, string>): http2.OutgoingHttpHeaders {
  return {
    ...metadata,
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
  };
}

/** A gRPC length-prefixed message (uncompressed). */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, 5);
  return frame;
}

/** A received gRPC message, before decoding. */
export interface Framed {
  compressed: boolean;
  bytes: Buffer;
}

/**
 * Splits a body into its length-prefixed messages, from `pos`; returns them and where the first
 * incomplete one starts (its bytes are kept for more data, or dropped at the end as grpc-js does).
 * A message over {@link MAX_RESPONSE_MESSAGE_BYTES} fails the call, with the HTTP status's error
 * instead when that is not 200 (an error page, not gRPC).
 */
export function readMessages(
  body: Buffer,
  httpStatus: number | undefined,
): { messages: Framed[]; rest: number } | AppError {
  const messages: Framed[] = [];
  let pos = 0;
  while (pos + 5 <= body.length) {
    const length = body.readUInt32BE(pos + 1);
    if (length > MAX_RESPONSE_MESSAGE_BYTES) {
      if (httpStatus !== undefined && httpStatus !== 200) {
        const mapped = httpStatusError(httpStatus);
        return failure(mapped.code, mapped.message);
      }
      const detail = `Received message larger than max (${length} vs ${MAX_RESPONSE_MESSAGE_BYTES})`;
      return failure(Code.ResourceExhausted, detail);
    }
    if (pos + 5 + length > body.length) break;
    messages.push({ compressed: body[pos] !== 0, bytes: body.subarray(pos + 5, pos + 5 + length) });
    pos += 5 + length;
  }
  return { messages, rest: pos };
}

/** Decodes one received message; INTERNAL for a compressed one or one `decode` rejects, as grpc-js. */
export function decodeMessage<T>(message: Framed, decode: (bytes: Uint8Array) => T): { value: T } | AppError {
  if (message.compressed) {
    return failure(Code.Internal, 'Received compressed message but "grpc-encoding" header was identity');
  }
  try {
    return { value: decode(message.bytes) };
  } catch (err) {
    return failure(Code.Internal, `Response message parsing error: ${messageOf(err)}`, err);
  }
}

/** How a stream ended, as {@link statusOf} reads it. */
export interface Ended {
  headers: http2.IncomingHttpHeaders | undefined;
  /** The trailers, or the response headers of a Trailers-Only response. */
  trailers: http2.IncomingHttpHeaders | undefined;
  rstCode: number;
  streamError: NodeJS.ErrnoException | undefined;
  conn: H2Connection;
}

/** A started call: its stream, and how it ended as far as the stream has reported. */
export interface H2Call {
  stream: http2.ClientHttp2Stream;
  ended: Ended;
}

/**
 * Starts a stream with `headers` on the connector's session and records its ending in `ended`:
 * the response headers, the trailers (or the headers of a Trailers-Only response), the error that
 * explains a close, and the reset code, set on 'close' before the caller's own 'close' listeners
 * run. A session that can no longer start streams (destroyed, out of stream ids) is retired and
 * the call fails UNAVAILABLE.
 */
export function startCall(connector: H2Connector, headers: http2.OutgoingHttpHeaders): H2Call | AppError {
  const conn = connector.connection();
  let stream: http2.ClientHttp2Stream;
  try {
    stream = conn.session.request(headers);
  } catch (err) {
    connector.retire(conn);
    return failure(Code.Unavailable, `request failed: ${messageOf(err)}`, err);
  }
  const ended: Ended = { headers: undefined, trailers: undefined, rstCode: 0, streamError: undefined, conn };
  stream.on("response", (h, flags) => {
    ended.headers = h;
    if (flags & NGHTTP2_FLAG_END_STREAM) ended.trailers = h; // Trailers-Only
  });
  stream.on("trailers", (t: http2.IncomingHttpHeaders) => (ended.trailers = t));
  stream.on("error", (err: NodeJS.ErrnoException) => {
    // A reset's own error carries nothing the rstCode does not; others (ECONNRESET, a refused
    // connection) explain the close.
    if (err.code !== "ERR_HTTP2_STREAM_ERROR") ended.streamError = err;
  });
  stream.on("close", () => (ended.rstCode = stream.rstCode));
  return { stream, ended };
}

/** The HTTP status of the response headers, if any came. */
export function httpStatusOf(headers: http2.IncomingHttpHeaders | undefined): number | undefined {
  return headers?.[HTTP2_HEADER_STATUS] as number | undefined;
}

/**
 * The call's final status: undefined for OK, else the AppError grpc-js gives — the server's status
 * (code, reason and details from `grpc-status-details-bin`), or what grpc-js derives from a reset,
 * a dropped connection or a non-gRPC HTTP answer.
 */
export function statusOf(e: Ended): AppError | undefined {
  const httpStatus = httpStatusOf(e.headers);
  if (e.trailers === undefined) return endedWithoutStatus(e, httpStatus);
  const status = first(e.trailers["grpc-status"]);
  if (status === undefined) {
    const mapped = httpStatusError(httpStatus ?? 0);
    return errorFromStatus(mapped.code, mapped.message, statusDetails(e.trailers));
  }
  const code = Number(status);
  if (code !== 0) return errorFromStatus(code, grpcMessage(e.trailers), statusDetails(e.trailers));
  return undefined;
}

/** grpc-js's status for a stream that closed without a gRPC status (subchannel-call.ts). */
function endedWithoutStatus(e: Ended, httpStatus: number | undefined): AppError {
  if (e.conn.session.destroyed) {
    // The connection failed or dropped: grpc-js reports UNAVAILABLE whatever the stream's code.
    if (!e.conn.connected) {
      const last = e.streamError?.message ?? "Failed to connect";
      return failure(Code.Unavailable, `No connection established. Last error: ${last}`, e.streamError);
    }
    return failure(Code.Unavailable, e.streamError?.message ?? "Connection dropped", e.streamError);
  }
  switch (e.rstCode) {
    case NGHTTP2_NO_ERROR:
      if (httpStatus !== undefined && httpStatus !== 200) {
        const mapped = httpStatusError(httpStatus);
        return failure(mapped.code, mapped.message);
      }
      return failure(Code.Internal, `Received RST_STREAM with code 0 (Call ended without gRPC status)`);
    case NGHTTP2_REFUSED_STREAM:
      return failure(Code.Unavailable, "Stream refused by server");
    case NGHTTP2_CANCEL:
      return failure(Code.Canceled, "Call cancelled");
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return failure(Code.ResourceExhausted, "Bandwidth exhausted or memory limit exceeded");
    case NGHTTP2_INADEQUATE_SECURITY:
      return failure(Code.PermissionDenied, "Protocol not secure enough");
    case NGHTTP2_INTERNAL_ERROR:
      if (e.streamError === undefined)
        return failure(Code.Internal, `Received RST_STREAM with code ${e.rstCode} (Internal server error)`);
      if (e.streamError.code === "ECONNRESET" || e.streamError.code === "ETIMEDOUT")
        return failure(Code.Unavailable, e.streamError.message, e.streamError);
      return failure(
        Code.Internal,
        `Received RST_STREAM with code ${e.rstCode} triggered by internal client error: ${e.streamError.message}`,
        e.streamError,
      );
    default:
      return failure(Code.Internal, `Received RST_STREAM with code ${e.rstCode}`, e.streamError);
  }
}

/** grpc-js's mapping of a non-gRPC HTTP status. */
function httpStatusError(httpStatus: number): { code: Code; message: string } {
  const message = `Received HTTP status code ${httpStatus}`;
  switch (httpStatus) {
    case 400:
      return { code: Code.Internal, message };
    case 401:
      return { code: Code.Unauthenticated, message };
    case 403:
      return { code: Code.PermissionDenied, message };
    case 404:
      return { code: Code.Unimplemented, message };
    case 429:
    case 502:
    case 503:
    case 504:
      return { code: Code.Unavailable, message };
    default:
      return { code: Code.Unknown, message };
  }
}

/** An error with no details from the server: its reason is the code's name, as with grpc-js. */
export function failure(code: Code, message: string, cause?: unknown): AppError {
  return errorFromStatus(code, message, undefined, cause);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `grpc-message`, percent-decoded as grpc-js does (kept as sent when that fails). */
function grpcMessage(trailers: http2.IncomingHttpHeaders): string {
  const raw = first(trailers["grpc-message"]);
  if (raw === undefined) return "";
  try {
    return decodeURI(raw);
  } catch {
    return raw;
  }
}

/** The first value of `grpc-status-details-bin` (base64, values joined by commas), decoded. */
function statusDetails(trailers: http2.IncomingHttpHeaders): Uint8Array | undefined {
  const raw = first(trailers[STATUS_DETAILS_KEY]);
  if (raw === undefined) return undefined;
  return Buffer.from(raw.split(",")[0]!.trim(), "base64");
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
