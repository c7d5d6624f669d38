// HTTP fuzzing of the Messenger- and Instagram-style REST APIs: the operations come from each
// gateway's own OpenAPI document; each case is one request with hostile path ids, bodies,
// content types or headers, sent with node:http (full control over duplicate and huge headers).
import { request } from "node:http";
import { connect } from "node:net";
import { HOSTILE_IDS, type Rng } from "./prng.js";

/** One operation of an OpenAPI document. */
export interface Operation {
  method: string;
  /** OpenAPI path template, e.g. `/v1/users/{id}`. */
  path: string;
}

/** The kinds of hostile request the HTTP fuzzer builds. */
export const HTTP_KINDS = [
  "malformed-json",
  "wrong-types",
  "huge-body",
  "wrong-content-type",
  "huge-header",
  "duplicate-auth",
  "bad-auth-scheme",
  "hostile-path-id",
  "deep-nesting",
] as const;
export type HttpKind = (typeof HTTP_KINDS)[number];

/** One request to send. */
export interface HttpCase {
  kind: HttpKind;
  method: string;
  path: string;
  /** Header name → value, or several values (sent as repeated header lines). */
  headers: Record<string, string | string[]>;
  body?: Buffer;
}

/** A response as seen by the fuzzer. */
export interface HttpOutcome {
  status: number;
  contentType: string;
  body: string;
  /** Set when the request failed at the transport level (reset, timeout). */
  error?: string;
}

/** Lists the operations of an OpenAPI 3 document (skipping the document itself). */
export function operationsOf(doc: { paths?: Record<string, Record<string, unknown>> }): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {}))
    for (const method of Object.keys(item))
      if (["get", "post", "put", "patch", "delete"].includes(method) && path !== "/openapi.json")
        out.push({ method: method.toUpperCase(), path });
  return out;
}

const WRONG_VALUES: readonly unknown[] = [
  null,
  true,
  -1,
  1.5,
  1e308,
  "",
  "x".repeat(5_000),
  [],
  [1, "a", null],
  {},
  { $ne: null },
  "\u0000",
  "\ud800",
];

function wrongTypedBody(rng: Rng): unknown {
  const keys = [
    "registration_id",
    "recipient",
    "message",
    "ciphertexts",
    "body",
    "device_id",
    "ids",
    "username",
    "text",
    "members",
    "name",
    "thread_id",
    "password",
    "identity_key",
    "signed_prekey",
    "one_time_prekeys",
    "kyber_prekeys",
    "client_context",
    "__proto__",
    "constructor",
  ];
  const body: Record<string, unknown> = {};
  for (let i = 0; i < rng.int(1, 6); i++) body[rng.pick(keys)] = rng.pick(WRONG_VALUES);
  if (rng.chance(0.3))
    body.message = { ciphertexts: [{ device_id: rng.pick(WRONG_VALUES), body: rng.pick(WRONG_VALUES) }] };
  return rng.chance(0.1) ? rng.pick(WRONG_VALUES) : body;
}

const MALFORMED = [
  "{",
  "}",
  '{"a":',
  '{"a":1,}',
  "[1,2",
  "nul",
  '{"a":"\\x00"}',
  '{"a":"\\ud800"}',
  "\u0000\u0001",
  '{"__proto__":{"admin":true}}',
  '{"constructor":{"prototype":{"x":1}}}',
  "1e999999",
  '"unterminated',
];

/** Fills `{param}` placeholders with hostile or plausible ids. */
function fillPath(template: string, rng: Rng, plausible: readonly string[]): string {
  return template.replace(/\{[^}]+\}/g, () =>
    rng.chance(0.6) || plausible.length === 0 ? encodeURI(rng.pick(HOSTILE_IDS)) : rng.pick(plausible),
  );
}

/** Builds one case against one of `ops`. `token` is a valid bearer token of a fuzz user. */
export function buildHttpCase(
  ops: readonly Operation[],
  kind: HttpKind,
  rng: Rng,
  token: string,
  maxBodyBytes: number,
  plausibleIds: readonly string[],
): HttpCase {
  const op = rng.pick(ops);
  const path = fillPath(op.path, rng, kind === "hostile-path-id" ? [] : plausibleIds);
  const json = "application/json";
  const headers: Record<string, string | string[]> = {
    authorization: `Bearer ${token}`,
    "content-type": json,
  };
  let body: Buffer | undefined =
    op.method === "GET" || op.method === "DELETE"
      ? undefined
      : Buffer.from(JSON.stringify(wrongTypedBody(rng)));
  switch (kind) {
    case "malformed-json":
      body = Buffer.from(rng.pick(MALFORMED));
      break;
    case "wrong-types":
      body = Buffer.from(JSON.stringify(wrongTypedBody(rng)));
      break;
    case "huge-body":
      body = Buffer.concat([
        Buffer.from('{"pad":"'),
        Buffer.alloc(maxBodyBytes + 1024, 0x61),
        Buffer.from('"}'),
      ]);
      break;
    case "wrong-content-type":
      headers["content-type"] = rng.pick([
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-7",
        "application/octet-stream",
        "",
        "*/*",
        "application/json, text/plain",
      ]);
      body = Buffer.from(rng.chance(0.5) ? "a=1&b=2" : JSON.stringify(wrongTypedBody(rng)));
      break;
    case "huge-header":
      headers[rng.pick(["x-filler", "authorization", "cookie", "x-request-id", "accept"])] = "A".repeat(
        rng.pick([9_000, 20_000, 70_000]),
      );
      break;
    case "duplicate-auth":
      headers.authorization = [`Bearer ${token}`, rng.chance(0.5) ? `Bearer ${token}` : "Bearer other-token"];
      break;
    case "bad-auth-scheme":
      headers.authorization = rng.pick([
        `Basic ${Buffer.from("a:b").toString("base64")}`,
        "Bearer",
        "Bearer ",
        `bearer  ${token}  x`,
        "Token abc",
        "Digest username=x",
        `Bearer ${token}\u00e9`,
        `Bearer ${"A".repeat(4_000)}`,
        "Bearer ../../etc/passwd",
        "",
      ]);
      break;
    case "hostile-path-id":
      break;
    case "deep-nesting": {
      const depth = rng.int(1_000, 20_000);
      body = Buffer.from("[".repeat(depth) + "]".repeat(depth));
      break;
    }
  }
  return { kind, method: op.method, path, headers, body };
}

/** Sends a case with a client-side deadline; transport failures are reported, never thrown. */
export function sendHttp(port: number, c: HttpCase, deadlineMs: number): Promise<HttpOutcome> {
  if (c.body && c.body.length > 256 * 1024) return sendRaw(port, c, deadlineMs);
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: HttpOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(o);
    };
    const headers: Record<string, string | string[]> = { ...c.headers };
    if (c.body) headers["content-length"] = String(c.body.length);
    let req: ReturnType<typeof request>;
    try {
      req = request({ host: "127.0.0.1", port, method: c.method, path: c.path, headers });
    } catch (err) {
      // node refuses to send some headers (invalid characters): nothing reached the server.
      finish({ status: 0, contentType: "", body: "", error: `client refused: ${(err as Error).message}` });
      return;
    }
    const timer = setTimeout(() => {
      req.destroy();
      finish({ status: 0, contentType: "", body: "", error: "timeout" });
    }, deadlineMs);
    req.on("response", (res) => {
      const contentType = String(res.headers["content-type"] ?? "");
      // An event stream that opened is a success; it never ends by itself.
      if (contentType.startsWith("text/event-stream")) {
        finish({ status: res.statusCode ?? 0, contentType, body: "" });
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () =>
        finish({
          status: res.statusCode ?? 0,
          contentType: String(res.headers["content-type"] ?? ""),
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", (err) =>
        finish({ status: res.statusCode ?? 0, contentType: "", body: "", error: err.message }),
      );
    });
    // A server may answer 413 and close before a huge body is fully written (EPIPE/ECONNRESET on
    // our side): its answer still counts, so give the response a moment to arrive.
    req.on("error", (err) =>
      setTimeout(() => finish({ status: 0, contentType: "", body: "", error: err.message }), 1_000),
    );
    if (c.body) req.end(c.body);
    else req.end();
  });
}

/**
 * Sends a request over a raw socket and parses whatever answer arrived before the connection
 * closed. Used for huge bodies: a server may answer 413 and close while the body is still being
 * written, which makes node's HTTP client fail with EPIPE and drop the answer it already got.
 */
function sendRaw(port: number, c: HttpCase, deadlineMs: number): Promise<HttpOutcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: "127.0.0.1", port });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseRawResponse(Buffer.concat(chunks)));
    };
    const timer = setTimeout(finish, deadlineMs);
    socket.on("data", (d: Buffer) => {
      chunks.push(d);
      const parsed = parseRawResponse(Buffer.concat(chunks));
      if (parsed.error === undefined) finish();
    });
    socket.on("error", () => setTimeout(finish, 200));
    socket.on("close", finish);
    const lines = [`${c.method} ${c.path} HTTP/1.1`, `host: 127.0.0.1:${port}`, "connection: close"];
    for (const [k, v] of Object.entries(c.headers)) for (const one of [v].flat()) lines.push(`${k}: ${one}`);
    lines.push(`content-length: ${c.body?.length ?? 0}`);
    socket.write(lines.join("\r\n") + "\r\n\r\n");
    // The body in slices, stopping once an answer came: a server that answers early (413) and
    // closes with much unread data resets the connection, and the reset can discard its answer.
    const body = c.body ?? Buffer.alloc(0);
    let offset = 0;
    const pump = () => {
      while (chunks.length === 0 && offset < body.length && !socket.destroyed) {
        const slice = body.subarray(offset, offset + 16 * 1024);
        offset += slice.length;
        if (!socket.write(slice)) return void socket.once("drain", pump);
      }
    };
    // Like `Expect: 100-continue`: give the server a moment to reject on the headers alone
    // (Content-Length over its limit) before any of the body is sent.
    socket.once("connect", () => setTimeout(pump, 300));
  });
}

/** Parses a complete HTTP/1.1 response (skipping 1xx); `error` is set while it is incomplete. */
function parseRawResponse(raw: Buffer): HttpOutcome {
  let rest = raw.toString("latin1");
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0)
      return {
        status: 0,
        contentType: "",
        body: "",
        error: raw.length === 0 ? "no answer" : "incomplete answer",
      };
    const head = rest.slice(0, end).split("\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
    const headers = new Map(
      head
        .slice(1)
        .map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
    );
    rest = rest.slice(end + 4);
    if (status >= 100 && status < 200) continue;
    const length = Number(headers.get("content-length") ?? NaN);
    const body = Number.isFinite(length) ? rest.slice(0, length) : rest;
    if (Number.isFinite(length) && Buffer.byteLength(body, "latin1") < length)
      return { status, contentType: "", body: "", error: "incomplete answer" };
    return {
      status,
      contentType: headers.get("content-type") ?? "",
      body: Buffer.from(body, "latin1").toString("utf8"),
    };
  }
}

/**
 * A clear answer: a 2xx/3xx, or a 4xx problem+json with `type` and `status` matching the
 * response. A 5xx, a non-problem error body, a hang or a reset is not.
 */
export function isClearHttp(o: HttpOutcome): boolean {
  if (o.error !== undefined || o.status === 0) return false;
  if (o.status < 400) return true;
  if (o.status >= 500) return false;
  if (!o.contentType.startsWith("application/problem+json")) return false;
  try {
    const p = JSON.parse(o.body) as { type?: unknown; status?: unknown };
    return typeof p.type === "string" && p.status === o.status;
  } catch {
    return false;
  }
}
