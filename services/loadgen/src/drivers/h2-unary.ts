// A lean gRPC unary client over node:http2 for the load generator's unary sends. grpc-js spends
// about 130 µs of CPU per unary call in its client machinery (resolving, retrying and
// load-balancing calls, interceptors, call credentials, Metadata objects); this writes each request
// as one stream on one HTTP/2 session and reads the status itself, so that the load generator
// takes less CPU from the server it measures. It fails calls with the AppError grpc-js and
// `createClient` would give (h2-grpc.ts). Plaintext (h2c) only; no compression, no retries
// (grpc-js's transparent ones included), no abort signals.
import http2 from "node:http2";
import { Code } from "@switchboard/errors";
import type { AppError } from "@switchboard/errors";
import {
  createH2Connector,
  decodeMessage,
  failure,
  grpcFrame,
  httpStatusOf,
  readMessages,
  requestHeaders,
  startCall,
  statusOf,
  type Ended,
} from "./h2-grpc.js";

const { NGHTTP2_CANCEL } = http2.constants;

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

/**
 * Creates the client. A session is opened on the first call and reused until it closes, fails or
 * receives GOAWAY; the next call then opens a new one (a call is never retried). Sessions do not
 * keep the process alive: each call's deadline timer does while it is in flight.
 */
export function createH2UnaryClient(opts: H2UnaryClientOptions): H2UnaryClient {
  const connector = createH2Connector(opts.target);
  let closed = false;

  function call<T>(
    path: string,
    request: Uint8Array,
    decode: (bytes: Uint8Array) => T,
    timeoutMs: number,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (closed) return reject(new Error("h2 unary client is closed"));
      if (!(timeoutMs > 0)) return reject(failure(Code.DeadlineExceeded, "Deadline exceeded"));
      const started = startCall(connector, {
        ...requestHeaders(path, opts.metadata),
        "grpc-timeout": timeoutHeader(timeoutMs),
      });
      if (!("stream" in started)) return reject(started);
      const { stream, ended } = started;
      const chunks: Buffer[] = [];
      let settled = false;
      const timer = setTimeout(
        () => {
          settled = true;
          reject(failure(Code.DeadlineExceeded, `Deadline exceeded after ${timeoutMs}ms`));
          stream.close(NGHTTP2_CANCEL);
        },
        Math.min(timeoutMs, MAX_TIMER_MS),
      );
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("close", () => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        const result = outcome(ended, chunks, decode);
        if ("error" in result) reject(result.error);
        else resolve(result.value);
      });
      stream.end(grpcFrame(request));
    });
  }

  return {
    call,
    async close() {
      closed = true;
      await connector.close();
    },
  };
}

/** The result of an ended stream, in grpc-js's order: the response message first, then the status. */
function outcome<T>(
  e: Ended,
  chunks: Buffer[],
  decode: (bytes: Uint8Array) => T,
): { value: T } | { error: AppError } {
  const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const read = readMessages(body, httpStatusOf(e.headers));
  if (!("messages" in read)) return { error: read };
  const { messages } = read;
  if (messages.length > 1) return { error: failure(Code.Unimplemented, "Too many responses received") };
  let response: { value: T } | undefined;
  const message = messages[0];
  if (message !== undefined) {
    const decoded = decodeMessage(message, decode);
    if (!("value" in decoded)) return { error: decoded };
    response = decoded;
  }
  const status = statusOf(e);
  if (status !== undefined) return { error: status };
  return response ?? { error: failure(Code.Unimplemented, "No message received") };
}

/** grpc-timeout: milliseconds, or seconds when that takes more than the 8 digits allowed. */
function timeoutHeader(timeoutMs: number): string {
  const ms = Math.ceil(timeoutMs);
  return ms < 1e8 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}
