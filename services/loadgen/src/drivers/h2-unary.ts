// A lean gRPC unary client over node:http2 for the load generator's unary sends. grpc-js spends
// about 130 µs of CPU per unary call in its client machinery (resolving, retrying and
// load-balancing calls, interceptors, call credentials, Metadata objects); this writes each request
// as one stream on one HTTP/2 session and reads the status itself, so that the load generator
// takes less CPU from the server it measures. It fails calls with the AppError grpc-js and
// `createClient` would give (same code, same reason; messages of local failures may differ).
// Plaintext (h2c) only; no compression, no retries (grpc-js's transparent ones included), no abort
// signals, no streaming.
import http2 from "node:http2";
import { Code } from "@switchboard/errors";
import type { AppError } from "@switchboard/errors";
import { errorFromStatus, STATUS_DETAILS_KEY } from "@switchboard/grpc";

const {
  HTTP2_HEADER_STATUS,
  NGHTTP2_CANCEL,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_FLAG_END_STREAM,
  NGHTTP2_INADEQUATE_SECURITY,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_NO_ERROR,
  NGHTTP2_REFUSED_STREAM,
} = http2.constants;

/** grpc-js's default limit on a received message: a larger one fails RESOURCE_EXHAUSTED. */
const MAX_RESPONSE_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The longest delay setTimeout honours (a longer one fires at once). */
const MAX_TIMER_MS = 2_147_483_647;

/** Options of {@link createH2UnaryClient}. */
export interface H2UnaryClientOptions {
  /** A plaintext gRPC server, `host:port` (`[v6]:port`). */
  target: string;
  /** Metadata sent with every call, as lower-case ASCII headers (e.g. `authorization`). */
  metadata: Record<string, string>;
}

/** A unary gRPC client over one HTTP/2 session at a time; see {@link createH2UnaryClient}. */
export interface H2UnaryClient {
  /**
   * Calls the unary method at `path` (`/package.Service/Method`) with an encoded request and
   * resolves with `decode` of the response message. Rejects with an AppError: the server's status
   * (code, reason and details from `grpc-status-details-bin`), DEADLINE_EXCEEDED after `timeoutMs`,
   * UNAVAILABLE when there is no connection or it drops, INTERNAL for a response `decode` rejects,
   * and otherwise what grpc-js derives from a stream reset or an HTTP status. Rejects with a plain
   * Error after {@link H2UnaryClient.close}.
   */
  call<T>(path: string, request: Uint8Array, decode: (bytes: Uint8Array) => T, timeoutMs: number): Promise<T>;
  /** Closes the sessions once their calls are answered (or their deadlines pass). */
  close(): Promise<void>;
}

interface Connection {
  readonly session: http2.ClientHttp2Session;
  connected: boolean;
}

/**
 * Creates the client. A session is opened on the first call and reused until it closes, fails or
 * receives GOAWAY; the next call then opens a new one (a call is never retried). Sessions do not
 * keep the process alive: each call's deadline timer does while it is in flight.
 */
export function createH2UnaryClient(opts: H2UnaryClientOptions): H2UnaryClient {
  const authority = `http://${opts.target}`;
  const baseHeaders: http2.OutgoingHttpHeaders = {
    ...opts.metadata,
    ":method": "POST",
    "content-type": "application/grpc",
    te: "trailers",
  };
  const live = new Set<http2.ClientHttp2Session>();
  let current: Connection | undefined;
  let closed = false;

  function connection(): Connection {
    // A session can be closing before its events have retired it.
    if (current !== undefined && !current.session.closed && !current.session.destroyed) return current;
    const session = http2.connect(authority, {
      // As grpc-js does: Node degrades badly at its default 10 MB session memory limit.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    const conn: Connection = { session, connected: false };
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
  }

  function call<T>(
    path: string,
    request: Uint8Array,
    decode: (bytes: Uint8Array) => T,
    timeoutMs: number,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (closed) return reject(new Error("h2 unary client is closed"));
      if (!(timeoutMs > 0)) return reject(failure(Code.DeadlineExceeded, "Deadline exceeded"));
      const conn = connection();
      let stream: http2.ClientHttp2Stream;
      try {
        stream = conn.session.request({
          ...baseHeaders,
          ":path": path,
          "grpc-timeout": timeoutHeader(timeoutMs),
        });
      } catch (err) {
        // The session can no longer start streams (destroyed, out of stream ids).
        if (current === conn) current = undefined;
        return reject(failure(Code.Unavailable, `request failed: ${messageOf(err)}`, err));
      }
      const chunks: Buffer[] = [];
      let headers: http2.IncomingHttpHeaders | undefined;
      let trailers: http2.IncomingHttpHeaders | undefined;
      let streamError: NodeJS.ErrnoException | undefined;
      let settled = false;
      const timer = setTimeout(
        () => {
          settled = true;
          reject(failure(Code.DeadlineExceeded, `Deadline exceeded after ${timeoutMs}ms`));
          stream.close(NGHTTP2_CANCEL);
        },
        Math.min(timeoutMs, MAX_TIMER_MS),
      );
      stream.on("response", (h, flags) => {
        headers = h;
        if (flags & NGHTTP2_FLAG_END_STREAM) trailers = h; // Trailers-Only
      });
      stream.on("trailers", (t: http2.IncomingHttpHeaders) => (trailers = t));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (err: NodeJS.ErrnoException) => {
        // A reset's own error carries nothing the rstCode does not; others (ECONNRESET, a refused
        // connection) explain the close.
        if (err.code !== "ERR_HTTP2_STREAM_ERROR") streamError = err;
      });
      stream.on("close", () => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        const result = outcome(
          { headers, trailers, chunks, rstCode: stream.rstCode, streamError, conn },
          decode,
        );
        if ("error" in result) reject(result.error);
        else resolve(result.value);
      });
      const frame = Buffer.allocUnsafe(5 + request.byteLength);
      frame[0] = 0;
      frame.writeUInt32BE(request.byteLength, 1);
      frame.set(request, 5);
      stream.end(frame);
    });
  }

  return {
    call,
    async close() {
      closed = true;
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

interface Ended {
  headers: http2.IncomingHttpHeaders | undefined;
  /** The trailers, or the response headers of a Trailers-Only response. */
  trailers: http2.IncomingHttpHeaders | undefined;
  chunks: Buffer[];
  rstCode: number;
  streamError: NodeJS.ErrnoException | undefined;
  conn: Connection;
}

/** The result of an ended stream, in grpc-js's order: the response message first, then the status. */
function outcome<T>(e: Ended, decode: (bytes: Uint8Array) => T): { value: T } | { error: AppError } {
  const httpStatus = e.headers?.[HTTP2_HEADER_STATUS] as number | undefined;
  const messages = readMessages(e.chunks, httpStatus);
  if (!Array.isArray(messages)) return { error: messages };
  if (messages.length > 1) return { error: failure(Code.Unimplemented, "Too many responses received") };
  let response: { value: T } | undefined;
  const message = messages[0];
  if (message !== undefined) {
    if (message.compressed) {
      const detail = 'Received compressed message but "grpc-encoding" header was identity';
      return { error: failure(Code.Internal, detail) };
    }
    try {
      response = { value: decode(message.bytes) };
    } catch (err) {
      return { error: failure(Code.Internal, `Response message parsing error: ${messageOf(err)}`, err) };
    }
  }
  if (e.trailers === undefined) return { error: endedWithoutStatus(e, httpStatus) };
  const status = first(e.trailers["grpc-status"]);
  if (status === undefined) {
    const mapped = httpStatusError(httpStatus ?? 0);
    return { error: errorFromStatus(mapped.code, mapped.message, statusDetails(e.trailers)) };
  }
  const code = Number(status);
  if (code !== 0) return { error: errorFromStatus(code, grpcMessage(e.trailers), statusDetails(e.trailers)) };
  return response ?? { error: failure(Code.Unimplemented, "No message received") };
}

interface Framed {
  compressed: boolean;
  bytes: Buffer;
}

/**
 * Splits the body into its length-prefixed messages; a partial last one is dropped, as grpc-js
 * does. A message over MAX_RESPONSE_MESSAGE_BYTES fails the call.
 */
function readMessages(chunks: Buffer[], httpStatus: number | undefined): Framed[] | AppError {
  if (chunks.length === 0) return [];
  const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const out: Framed[] = [];
  let pos = 0;
  while (pos + 5 <= body.length) {
    const length = body.readUInt32BE(pos + 1);
    if (length > MAX_RESPONSE_MESSAGE_BYTES) {
      // grpc-js reports the HTTP status instead when it is not 200 (an error page, not gRPC).
      if (httpStatus !== undefined && httpStatus !== 200) {
        const mapped = httpStatusError(httpStatus);
        return failure(mapped.code, mapped.message);
      }
      const detail = `Received message larger than max (${length} vs ${MAX_RESPONSE_MESSAGE_BYTES})`;
      return failure(Code.ResourceExhausted, detail);
    }
    if (pos + 5 + length > body.length) break;
    out.push({ compressed: body[pos] !== 0, bytes: body.subarray(pos + 5, pos + 5 + length) });
    pos += 5 + length;
  }
  return out;
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
function failure(code: Code, message: string, cause?: unknown): AppError {
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

/** grpc-timeout: milliseconds, or seconds when that takes more than the 8 digits allowed. */
function timeoutHeader(timeoutMs: number): string {
  const ms = Math.ceil(timeoutMs);
  return ms < 1e8 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
