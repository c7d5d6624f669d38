// A fetch for the SDK's HTTP transports (Messenger-style and Instagram-style gateways) over undici's
// request API and keep-alive connection pools. The platform fetch costs the load generator about
// 0.4 ms of CPU per call (WHATWG streams, request cloning, a body tee); this costs about 0.1 ms,
// which at thousands of calls per second is most of a core. Long-lived event streams get a pool
// of their own, so that picking a free connection for a send never scans hundreds of busy ones.
import { STATUS_CODES } from "node:http";
import { Readable } from "node:stream";
import { Agent, request } from "undici";

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

/**
 * Creates the fetch. Responses are read whole before they are returned (a {@link BufferedResponse}),
 * except `text/event-stream` ones: a real `Response` whose body streams. Request bodies must be
 * strings (the transports send JSON).
 */
export function createPooledFetch(): PooledFetch {
  const calls = new Agent({ keepAliveTimeout: 30_000 });
  // No body timeout: an idle event stream is kept alive by the gateway's comments, and the
  // caller's signal ends it.
  const streams = new Agent({ keepAliveTimeout: 30_000, bodyTimeout: 0 });

  const pooledFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const headers = headerRecord(init.headers);
    if (init.body !== undefined && init.body !== null && typeof init.body !== "string")
      throw new TypeError("pooled fetch sends string bodies only");
    const streaming = (headers.accept ?? headers.Accept ?? "").includes("text/event-stream");
    const url = urlOf(input);
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
      closing ??= Promise.all([calls.close(), streams.destroy()]).then(() => undefined);
      return closing;
    },
  };
}
