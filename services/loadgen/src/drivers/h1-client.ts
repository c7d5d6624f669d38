// A lean HTTP/1.1 client for the load generator's calls to the Messenger- and Instagram-style
// gateways (pooled-fetch.ts): keep-alive connections over node:net, one request at a time on each
// (no pipelining), the request written as one string and the answer parsed from the socket's bytes.
// undici's request API spent about 44 % of the load generator's busy time on the Instagram-style
// path (three calls per send: its Request, handler and body stream objects, the scan of a pool of
// hundreds of connections for a free one, its parser), plus much of the collector's work; this
// client keeps the free connections on a stack. Plaintext only; answers are read whole, so it is
// not for event streams.
import { connect, type Socket } from "node:net";

/** A request: `path` is the request target (path and query, already encoded). */
export interface H1Request {
  readonly method: string;
  readonly path: string;
  /** Names and values; `host`, `content-length`, `transfer-encoding` and `connection` are set here. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly signal?: AbortSignal;
}

/** An answer read whole. Header names are lower case; a repeated header has all its values. */
export interface H1Response {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  readonly body: string;
}

/** Keep-alive connections to one origin; see {@link createH1Pool}. */
export interface H1Pool {
  /** Sends `req` on a free connection (or a new one) and reads the answer. */
  request(req: H1Request): Promise<H1Response>;
  /** Connections open now (busy and free); for tests. */
  readonly connections: number;
  /** Closes free connections now and busy ones once their answer is read. */
  close(): Promise<void>;
}

export interface H1PoolOptions {
  /** How long a free connection is kept, ms (shortened to a second under the server's `keep-alive: timeout=`). */
  readonly idleMs: number;
}

/** Headers of a request that the client sets itself (a caller's value would contradict the framing). */
const OWN_HEADERS = new Set(["host", "content-length", "transfer-encoding", "connection"]);

/** Longest status line and header block accepted, as Node's parser. */
const MAX_HEAD_BYTES = 16 * 1024;

const CRLF_CRLF = Buffer.from("\r\n\r\n");
const FORBIDDEN_IN_HEADER = /[\r\n\0]/;

/**
 * The failure fetch gives for a network error (a `TypeError` "fetch failed" with the cause), so
 * that callers that map fetch's errors see the same thing.
 */
function fetchFailed(cause: unknown): TypeError {
  return new TypeError("fetch failed", { cause });
}

function invalidResponse(what: string): Error {
  return new Error(`invalid HTTP/1.1 response: ${what}`);
}

/** How the body of an answer ends: with no body, after a length, after a last chunk, or with the connection. */
type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; left: number }
  | { kind: "chunked"; left: number; dataEnded: boolean; trailers: boolean }
  | { kind: "close" };

/** One request on a connection and the parse of its answer. */
class Exchange {
  status = 0;
  headers: Record<string, string | string[]> = {};
  keepAlive = true;
  keepAliveMs: number | undefined;
  /** Where the answer ended in the last buffer fed, once {@link feed} returned -1. */
  end = 0;
  private framing: BodyFraming | undefined;
  private readonly parts: Buffer[] = [];

  constructor(
    readonly method: string,
    readonly resolve: (res: H1Response) => void,
    readonly reject: (err: Error) => void,
  ) {}

  /** Whether the head of the answer has been read (a failure after it is not a connection failure). */
  get started(): boolean {
    return this.framing !== undefined;
  }

  /**
   * Consumes what it can of `buf` from `offset`: returns the offset of the first byte it could not
   * use yet, or -1 when the answer is complete (it ended at {@link end}). Throws on bytes that are
   * not an HTTP/1.1 answer.
   */
  feed(buf: Buffer, offset: number): number {
    let at = offset;
    while (at < buf.length || this.framing?.kind === "none") {
      if (this.framing === undefined) {
        const headEnd = buf.indexOf(CRLF_CRLF, at);
        if (headEnd < 0) {
          if (buf.length - at > MAX_HEAD_BYTES) throw invalidResponse("head too large");
          return at;
        }
        // An interim (1xx) answer leaves the framing unset: the final answer follows.
        this.readHead(buf.toString("latin1", at, headEnd));
        at = headEnd + 4;
        continue;
      }
      const f = this.framing;
      if (f.kind === "none") {
        this.end = at;
        return -1;
      }
      if (f.kind === "close") {
        this.parts.push(buf.subarray(at));
        return buf.length;
      }
      if (f.kind === "length") {
        const take = Math.min(f.left, buf.length - at);
        if (take > 0) this.parts.push(buf.subarray(at, at + take));
        f.left -= take;
        at += take;
        if (f.left === 0) {
          this.end = at;
          return -1;
        }
        return at;
      }
      // chunked
      if (f.left > 0) {
        const take = Math.min(f.left, buf.length - at);
        this.parts.push(buf.subarray(at, at + take));
        f.left -= take;
        at += take;
        if (f.left > 0) return at;
        f.dataEnded = true; // the CRLF after the chunk's data comes next
        continue;
      }
      const lineEnd = buf.indexOf("\r\n", at, "latin1");
      if (lineEnd < 0) {
        if (buf.length - at > MAX_HEAD_BYTES) throw invalidResponse("chunk line too long");
        return at;
      }
      const line = buf.toString("latin1", at, lineEnd);
      at = lineEnd + 2;
      if (f.dataEnded) {
        if (line !== "") throw invalidResponse("chunk data longer than its size");
        f.dataEnded = false;
        continue;
      }
      if (f.trailers) {
        if (line === "") {
          this.end = at;
          return -1;
        }
        continue;
      }
      const semi = line.indexOf(";");
      const sizeText = (semi < 0 ? line : line.slice(0, semi)).trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText))
        throw invalidResponse(`chunk size ${JSON.stringify(sizeText)}`);
      const size = parseInt(sizeText, 16);
      if (size === 0) f.trailers = true;
      else f.left = size;
    }
    return at;
  }

  /** The connection closed: completes an answer framed by the close, else it is cut. */
  closed(): boolean {
    if (this.framing?.kind !== "close") return false;
    this.keepAlive = false;
    return true;
  }

  response(): H1Response {
    const body =
      this.parts.length === 0
        ? ""
        : this.parts.length === 1
          ? this.parts[0]!.toString("utf8")
          : Buffer.concat(this.parts).toString("utf8");
    return { status: this.status, headers: this.headers, body };
  }

  /** Parses a status line and headers, and sets the framing unless the answer is an interim one. */
  private readHead(head: string): void {
    const lines = head.split("\r\n");
    const statusLine = lines[0]!;
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(statusLine);
    if (m === null) throw invalidResponse(`status line ${JSON.stringify(statusLine.slice(0, 64))}`);
    const status = Number(m[2]);
    const headers: Record<string, string | string[]> = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      if (colon <= 0) throw invalidResponse(`header line ${JSON.stringify(line.slice(0, 64))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const had = headers[name];
      if (had === undefined) headers[name] = value;
      else if (Array.isArray(had)) had.push(value);
      else headers[name] = [had, value];
    }
    if (status >= 100 && status < 200) {
      if (status === 101) throw invalidResponse("unexpected protocol switch");
      return;
    }
    this.status = status;
    this.headers = headers;
    const connection = lower(headers.connection);
    this.keepAlive = m[1] === "1" ? !connection.includes("close") : connection.includes("keep-alive");
    const hint = /timeout=(\d+)/.exec(lower(headers["keep-alive"]));
    if (hint !== null) this.keepAliveMs = Number(hint[1]) * 1000;
    const encoding = lower(headers["transfer-encoding"]);
    const length = headers["content-length"];
    if (this.method === "HEAD" || status === 204 || status === 304) this.framing = { kind: "none" };
    else if (encoding !== "") {
      if (!encoding.endsWith("chunked")) this.framing = { kind: "close" };
      else this.framing = { kind: "chunked", left: 0, dataEnded: false, trailers: false };
    } else if (length !== undefined) {
      if (Array.isArray(length) || !/^\d+$/.test(length))
        throw invalidResponse(`content-length ${String(length)}`);
      const n = Number(length);
      this.framing = n === 0 ? { kind: "none" } : { kind: "length", left: n };
    } else this.framing = { kind: "close" };
    if (this.framing.kind === "close") this.keepAlive = false;
  }
}

function lower(v: string | string[] | undefined): string {
  return v === undefined ? "" : (Array.isArray(v) ? v.join(",") : v).toLowerCase();
}

/** A connection of the pool and the exchange it carries, if any. */
interface Connection {
  readonly socket: Socket;
  exchange: Exchange | undefined;
  /** Bytes read and not yet parsed. */
  pending: Buffer | undefined;
  idleMs: number;
}

/**
 * Creates a pool for `http://host:port` (`host` may be an IPv6 literal in brackets). Connections
 * open as calls need them, without a limit, and are reused most recent first, so that surplus ones
 * idle out. A request is never retried: a connection that fails takes its call with it, which
 * rejects with fetch's `TypeError` "fetch failed" (the cause says why), or with the signal's
 * reason when the signal aborts it.
 */
export function createH1Pool(host: string, port: number, options: H1PoolOptions): H1Pool {
  const connectHost = host.startsWith("[") ? host.slice(1, -1) : host;
  const hostHeader = `${host}:${port}`;
  const free: Connection[] = [];
  const open = new Set<Connection>();
  let closing = false;
  let allClosed: (() => void) | undefined;

  function forget(conn: Connection): void {
    open.delete(conn);
    const i = free.lastIndexOf(conn);
    if (i >= 0) free.splice(i, 1);
    if (closing && open.size === 0) allClosed?.();
  }

  /** Closes `conn` and stops counting it now (its "close" event comes later). */
  function drop(conn: Connection): void {
    conn.socket.destroy();
    forget(conn);
  }

  function release(conn: Connection): void {
    if (closing) {
      drop(conn);
      return;
    }
    conn.socket.setTimeout(conn.idleMs);
    // A free connection alone keeps no process alive.
    conn.socket.unref();
    free.push(conn);
  }

  function onData(conn: Connection, chunk: Buffer): void {
    const ex = conn.exchange;
    if (ex === undefined) {
      // Bytes nobody asked for: the connection can no longer be trusted.
      drop(conn);
      return;
    }
    const buf = conn.pending === undefined ? chunk : Buffer.concat([conn.pending, chunk]);
    let at: number;
    try {
      at = ex.feed(buf, 0);
    } catch (err) {
      conn.exchange = undefined;
      drop(conn);
      ex.reject(fetchFailed(err));
      return;
    }
    if (at >= 0) {
      conn.pending = at < buf.length ? buf.subarray(at) : undefined;
      return;
    }
    conn.pending = undefined;
    conn.exchange = undefined;
    if (ex.keepAliveMs !== undefined) conn.idleMs = Math.min(conn.idleMs, Math.max(ex.keepAliveMs - 1000, 0));
    const reusable = ex.keepAlive && ex.end === buf.length && conn.idleMs > 0;
    ex.resolve(ex.response());
    if (reusable) release(conn);
    else drop(conn);
  }

  function newConnection(): Connection {
    const socket = connect({ host: connectHost, port, noDelay: true });
    const conn: Connection = {
      socket,
      exchange: undefined,
      pending: undefined,
      idleMs: options.idleMs,
    };
    open.add(conn);
    let failure: unknown;
    socket.on("data", (chunk: Buffer) => onData(conn, chunk));
    socket.on("timeout", () => socket.destroy());
    // The server closed it (an idle one, after its keep-alive): no longer free before "close".
    socket.on("end", () => {
      const i = free.lastIndexOf(conn);
      if (i >= 0) free.splice(i, 1);
    });
    socket.on("error", (err) => (failure = err));
    socket.on("close", () => {
      forget(conn);
      const ex = conn.exchange;
      if (ex === undefined) return;
      conn.exchange = undefined;
      if (ex.closed()) ex.resolve(ex.response());
      else
        ex.reject(
          fetchFailed(
            failure ??
              new Error(
                ex.started
                  ? "the connection closed before the answer ended"
                  : "the connection closed before an answer",
              ),
          ),
        );
    });
    return conn;
  }

  function serialize(req: H1Request): string {
    let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${hostHeader}\r\n`;
    for (const name in req.headers) {
      const value = req.headers[name]!;
      if (OWN_HEADERS.has(name.toLowerCase())) continue;
      if (FORBIDDEN_IN_HEADER.test(name) || FORBIDDEN_IN_HEADER.test(value))
        throw new TypeError(`invalid header ${JSON.stringify(name)}`);
      head += `${name}: ${value}\r\n`;
    }
    const body = req.body;
    if (body !== undefined) head += `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    else head += req.method === "GET" || req.method === "HEAD" ? "\r\n" : "content-length: 0\r\n\r\n";
    return head;
  }

  return {
    get connections() {
      return open.size;
    },

    request(req) {
      if (closing) return Promise.reject(fetchFailed(new Error("the pool is closed")));
      const signal = req.signal;
      // As fetch does, a signal's reason is the rejection as it is (an Error unless a caller chose otherwise).
      if (signal?.aborted) return Promise.reject(signal.reason as Error);
      return new Promise<H1Response>((resolve, reject) => {
        // Throws (so rejects) before a connection is taken for a request that cannot be written.
        const text = serialize(req);
        let conn = free.pop();
        if (conn !== undefined) {
          conn.socket.setTimeout(0);
          conn.socket.ref();
        } else conn = newConnection();
        const c = conn;
        let onAbort: (() => void) | undefined;
        const settle = () => {
          if (onAbort !== undefined) signal!.removeEventListener("abort", onAbort);
        };
        c.exchange = new Exchange(
          req.method,
          (res) => {
            settle();
            resolve(res);
          },
          (err) => {
            settle();
            reject(err);
          },
        );
        if (signal !== undefined) {
          onAbort = () => {
            const ex = c.exchange;
            if (ex === undefined) return;
            c.exchange = undefined;
            drop(c);
            ex.reject(signal.reason as Error);
          };
          signal.addEventListener("abort", onAbort, { once: true });
        }
        c.socket.write(text);
      });
    },

    close() {
      closing = true;
      for (const conn of free.splice(0)) conn.socket.destroy();
      if (open.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => (allClosed = resolve));
    },
  };
}
