// A fetch for the SDK's HTTP transports (Messenger-style and Instagram-style gateways). The platform
// fetch costs the load generator about 0.4 ms of CPU per call (WHATWG streams, request cloning, a
// body tee); undici's request API about 0.1 ms, which at thousands of calls per second is still
// most of a core. Calls over plain HTTP therefore go over the lean keep-alive client of
// h1-client.ts; event streams (long-lived, one per device) and HTTPS calls over undici's request
// API, streams in a pool of their own.
import { STATUS_CODES } from "node:http";
import { Readable } from "node:stream";
import { Agent, request } from "undici";
import { createH1Pool, type H1Pool } from "./h1-client.js";

/** A fetch and the connection pools behind it. */
export interface PooledFetch {
  /** Enough of `fetch` for the SDK transports: string URLs, string bodies, header records, signals. */
  readonly fetch: typeof fetch;
  /** Closes the pooled connections once their calls are answered; open event streams are cut. */
  close(): Promise<void>;
}

/** Statuses whose response has no body (a Response refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * A response read whole: the part of `Response` the SDK transports use (`status`, `ok`,
 * `statusText`, `headers`, `text()`, `json()`; `body` is null, as for a consumed body). A real
 * `Response` wraps its text in a WHATWG stream (about 20 µs of CPU a call in the load generator's
 * profile, with the stream's transfer hooks), only to be read back whole.
 */
class BufferedResponse {
  readonly ok: boolean;
  readonly body = null;
  readonly bodyUsed = false;
  readonly redirected = false;
  readonly type = "basic";
  private headerObject: Headers | undefined;

  constructor(
    readonly url: string,
    readonly status: number,
    private readonly rawHeaders: Record<string, string | string[] | undefined>,
    private readonly content: string,
  ) {
    this.ok = status >= 200 && status < 300;
  }

  get statusText(): string {
    return STATUS_CODES[this.status] ?? "";
  }

  get headers(): Headers {
    this.headerObject ??= headersOf(this.rawHeaders);
    return this.headerObject;
  }

  text(): Promise<string> {
    return Promise.resolve(this.content);
  }

  json(): Promise<unknown> {
    return new Promise((resolve) => resolve(JSON.parse(this.content)));
  }
}

function headersOf(raw: Record<string, string | string[] | undefined>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  return headers;
}

function headerRecord(init: RequestInit["headers"]): Record<string, string> {
  if (init === undefined) return {};
  if (init instanceof Headers || Array.isArray(init)) return Object.fromEntries(new Headers(init));
  return init as Record<string, string>;
}

function urlOf(input: string | URL | Request): string {
  if (typeof input === "string") return input;
  if (input instanceof URL) return input.href;
  throw new TypeError("pooled fetch takes a URL, not a Request");
}

/** How long a free connection is kept (the gateways keep theirs 72 s). */
const KEEP_ALIVE_MS = 30_000;

/** Characters a request target may hold as is; anything else goes through `URL` to be encoded. */
const PLAIN_TARGET = /^[\x21-\x7e]*$/;

/** An `http:` URL's origin (`http://host:port`, the port explicit) and its request target. */
function splitHttpUrl(
  url: string,
): { origin: string; host: string; port: number; target: string } | undefined {
  if (!url.startsWith("http://")) return undefined;
  const slash = url.indexOf("/", 7);
  const authority = slash < 0 ? url.slice(7) : url.slice(7, slash);
  let target = slash < 0 ? "/" : url.slice(slash);
  const hash = target.indexOf("#");
  if (hash >= 0) target = target.slice(0, hash);
  if (authority.includes("@") || !PLAIN_TARGET.test(target)) {
    const u = new URL(url);
    if (u.username !== "" || u.password !== "") return undefined;
    target = u.pathname + u.search;
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(authority);
  if (m === null) return undefined;
  const port = m[2] === undefined ? 80 : Number(m[2]);
  return { origin: `${m[1]!.toLowerCase()}:${port}`, host: m[1]!.toLowerCase(), port, target };
}

/**
 * Creates the fetch. Responses are read whole before they are returned (a {@link BufferedResponse}),
 * except `text/event-stream` ones: a real `Response` whose body streams. Request bodies must be
 * strings (the transports send JSON).
 */
export function createPooledFetch(): PooledFetch {
  const lean = new Map<string, H1Pool>();
  const calls = new Agent({ keepAliveTimeout: KEEP_ALIVE_MS });
  // No body timeout: an idle event stream is kept alive by the gateway's comments, and the
  // caller's signal ends it.
  const streams = new Agent({ keepAliveTimeout: KEEP_ALIVE_MS, bodyTimeout: 0 });

  const pooledFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const headers = headerRecord(init.headers);
    if (init.body !== undefined && init.body !== null && typeof init.body !== "string")
      throw new TypeError("pooled fetch sends string bodies only");
    const streaming = (headers.accept ?? headers.Accept ?? "").includes("text/event-stream");
    const url = urlOf(input);
    const plain = streaming ? undefined : splitHttpUrl(url);
    if (plain !== undefined) {
      let pool = lean.get(plain.origin);
      if (pool === undefined) {
        pool = createH1Pool(plain.host, plain.port, { idleMs: KEEP_ALIVE_MS });
        lean.set(plain.origin, pool);
      }
      const method = init.method ?? "GET";
      if ((method === "GET" || method === "HEAD") && typeof init.body === "string")
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      const r = await pool.request({
        method,
        path: plain.target,
        headers,
        body: init.body ?? undefined,
        signal: init.signal ?? undefined,
      });
      return new BufferedResponse(url, r.status, r.headers, r.body) as unknown as Response;
    }
    const r = await request(url, {
      method: (init.method ?? "GET") as "GET",
      headers,
      body: init.body ?? undefined,
      signal: init.signal ?? undefined,
      dispatcher: streaming ? streams : calls,
    });
    if (NULL_BODY.has(r.statusCode)) {
      await r.body.dump();
      return new BufferedResponse(url, r.statusCode, r.headers, "") as unknown as Response;
    }
    const contentType = r.headers["content-type"];
    if (streaming && typeof contentType === "string" && contentType.startsWith("text/event-stream")) {
      return new Response(Readable.toWeb(r.body) as ReadableStream<Uint8Array>, {
        status: r.statusCode,
        statusText: STATUS_CODES[r.statusCode] ?? "",
        headers: headersOf(r.headers),
      });
    }
    return new BufferedResponse(url, r.statusCode, r.headers, await r.body.text()) as unknown as Response;
  };

  let closing: Promise<void> | undefined;
  return {
    fetch: pooledFetch,
    close() {
      closing ??= Promise.all([
        ...[...lean.values()].map((p) => p.close()),
        calls.close(),
        streams.destroy(),
      ]).then(() => undefined);
      return closing;
    },
  };
}
