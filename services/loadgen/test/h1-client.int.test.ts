import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { describe, expect, onTestFinished, test } from "vitest";
import { createH1Pool, type H1Pool } from "../src/drivers/h1-client.js";
import { closedPort } from "./h2-support.js";

/** A node:http server answering with `handler`, its connections counted; closed after the test. */
async function httpServer(
  handler: (req: IncomingMessage, body: string, res: ServerResponse) => void,
  { keepAliveTimeoutMs = 5_000 } = {},
) {
  const server = createHttpServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => handler(req, body, res));
  });
  server.keepAliveTimeout = keepAliveTimeoutMs;
  let connections = 0;
  server.on("connection", () => connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const pool = createH1Pool("127.0.0.1", port, { idleMs: 30_000 });
  onTestFinished(async () => {
    await pool.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${port}`, pool, connections: () => connections };
}

/**
 * A TCP server that answers each request (read up to its blank line; bodies are not read) with the
 * bytes `answer` writes; closed after the test.
 */
async function rawServer(answer: (socket: Socket, request: string) => void) {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let seen = "";
    socket.on("data", (chunk) => {
      seen += chunk.toString("latin1");
      const end = seen.indexOf("\r\n\r\n");
      if (end < 0) return;
      const request = seen.slice(0, end);
      seen = seen.slice(end + 4);
      answer(socket, request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const pool = createH1Pool("127.0.0.1", port, { idleMs: 30_000 });
  onTestFinished(async () => {
    for (const s of sockets) s.destroy();
    await pool.close();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${port}`, pool };
}

/** What the platform fetch reads from `url`, in the pool's answer shape. */
async function viaFetch(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of res.headers) if (name !== "set-cookie") headers[name] = value;
  const cookies = res.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies.length === 1 ? cookies[0]! : cookies;
  return { status: res.status, headers, body: await res.text() };
}

/** The pool's answer with repeated headers joined as fetch's Headers join them (set-cookie aside). */
function normalized(res: Awaited<ReturnType<H1Pool["request"]>>) {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(res.headers))
    headers[name] = Array.isArray(value) && name !== "set-cookie" ? value.join(", ") : value;
  return { status: res.status, headers, body: res.body };
}

const ignoringDate = (res: { headers: Record<string, unknown> }) => {
  const { date: _date, ...rest } = res.headers;
  return { ...res, headers: rest };
};

describe("createH1Pool", () => {
  test("reads what the platform fetch reads: lengths, chunked bodies in pieces, repeated headers, no body", async () => {
    const { url, pool } = await httpServer((req, body, res) => {
      switch (req.url) {
        case "/json":
          res.writeHead(201, { "content-type": "application/json", "x-seen": `${req.method} ${body}` });
          res.end(JSON.stringify({ auth: req.headers.authorization, length: req.headers["content-length"] }));
          return;
        case "/chunked": {
          // No length: node:http sends it chunked, here in three pieces with pauses.
          res.setHeader("set-cookie", ["a=1", "b=2"]);
          res.setHeader("x-many", ["x", "y"]);
          res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
          res.write("héllo ");
          setTimeout(() => res.write("wörld ".repeat(5_000)), 10);
          setTimeout(() => res.end("✓"), 20);
          return;
        }
        case "/none":
          res.writeHead(204);
          res.end();
          return;
        default:
          res.writeHead(404, { "content-type": "application/problem+json" });
          res.end(JSON.stringify({ reason: "NOT_FOUND" }));
      }
    });
    const cases: [string, { method: string; headers: Record<string, string>; body?: string }][] = [
      ["/json", { method: "POST", headers: { authorization: "Bearer t" }, body: JSON.stringify({ ü: 1 }) }],
      ["/chunked", { method: "GET", headers: {} }],
      ["/none", { method: "DELETE", headers: {} }],
      ["/missing?x=1", { method: "PUT", headers: { "content-type": "application/json" }, body: "{}" }],
    ];
    for (const [path, req] of cases) {
      const ours = normalized(await pool.request({ ...req, path }));
      const theirs = await viaFetch(`${url}${path}`, req);
      expect(ignoringDate(ours), path).toEqual(ignoringDate(theirs));
    }
    const json = await pool.request({ method: "POST", path: "/json", headers: {}, body: "é" });
    // The length counts bytes, not characters.
    expect(JSON.parse(json.body)).toEqual({ length: "2" });
    expect(json.headers["x-seen"]).toBe("POST é");
  });

  test("reuses a free connection, opens more for concurrent calls, and reuses those after", async () => {
    const { pool, connections } = await httpServer((_req, _body, res) => setTimeout(() => res.end("ok"), 5));
    for (let i = 0; i < 3; i++)
      expect((await pool.request({ method: "GET", path: "/", headers: {} })).body).toBe("ok");
    expect(connections()).toBe(1);
    const answers = await Promise.all(
      Array.from({ length: 4 }, () => pool.request({ method: "GET", path: "/", headers: {} })),
    );
    expect(answers.map((a) => a.body)).toEqual(["ok", "ok", "ok", "ok"]);
    expect(connections()).toBe(4);
    await Promise.all(
      Array.from({ length: 4 }, () => pool.request({ method: "GET", path: "/", headers: {} })),
    );
    expect(connections()).toBe(4);
    expect(pool.connections).toBe(4);
  });

  test("a connection the server closed when idle is dropped and the next call opens another", async () => {
    const { pool, connections } = await httpServer((_req, _body, res) => res.end("ok"), {
      keepAliveTimeoutMs: 30,
    });
    await pool.request({ method: "GET", path: "/", headers: {} });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(pool.connections).toBe(0);
    expect((await pool.request({ method: "POST", path: "/", headers: {}, body: "x" })).body).toBe("ok");
    expect(connections()).toBe(2);
  });

  test("an answer with `connection: close`, or ended by the close, is read and its connection not reused", async () => {
    const { pool } = await rawServer((socket, request) => {
      if (request.startsWith("GET /close "))
        socket.end("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok");
      else socket.end("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end");
    });
    expect((await pool.request({ method: "GET", path: "/close", headers: {} })).body).toBe("ok");
    expect((await pool.request({ method: "GET", path: "/eof", headers: {} })).body).toBe("until the end");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(pool.connections).toBe(0);
  });

  test("skips interim answers and reads chunk extensions and trailers", async () => {
    const { pool } = await rawServer((socket) => {
      socket.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
      socket.write("3;ext=1\r\nabc\r\n");
      socket.write("0\r\nx-trailer: 1\r\n\r\n");
    });
    const res = await pool.request({ method: "GET", path: "/", headers: {} });
    expect(res).toMatchObject({ status: 200, body: "abc" });
    // The connection is free again: a second call works on it.
    expect((await pool.request({ method: "GET", path: "/", headers: {} })).body).toBe("abc");
    expect(pool.connections).toBe(1);
  });

  test("fails like fetch on a refused connection, a cut answer or bytes that are not HTTP", async () => {
    const refused = createH1Pool("127.0.0.1", await closedPort(), { idleMs: 1_000 });
    const err = await refused.request({ method: "GET", path: "/", headers: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(err).toMatchObject({ message: "fetch failed", cause: { code: "ECONNREFUSED" } });
    await refused.close();

    const { pool } = await rawServer((socket, request) => {
      if (request.startsWith("GET /cut ")) socket.end("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort");
      else if (request.startsWith("GET /silent ")) socket.end();
      else if (request.startsWith("GET /chunk "))
        socket.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n");
      else socket.write("SSH-2.0-OpenSSH\r\n\r\n");
    });
    for (const [path, cause] of [
      ["/cut", "the connection closed before the answer ended"],
      ["/silent", "the connection closed before an answer"],
      ["/chunk", 'invalid HTTP/1.1 response: chunk size "zz"'],
      ["/ssh", 'invalid HTTP/1.1 response: status line "SSH-2.0-OpenSSH"'],
    ]) {
      const e = await pool.request({ method: "GET", path: path!, headers: {} }).catch((x: unknown) => x);
      expect(e, path).toBeInstanceOf(TypeError);
      expect((e as TypeError).cause, path).toMatchObject({ message: cause });
    }
    expect(pool.connections).toBe(0);
  });

  test("the signal rejects with its reason, before or during a call, and the connection is dropped", async () => {
    const { pool } = await rawServer(() => {
      // Never answers.
    });
    const before = AbortSignal.abort(new Error("no longer wanted"));
    await expect(pool.request({ method: "GET", path: "/", headers: {}, signal: before })).rejects.toThrow(
      "no longer wanted",
    );
    await expect(
      pool.request({ method: "GET", path: "/", headers: {}, signal: AbortSignal.timeout(30) }),
    ).rejects.toMatchObject({ name: "TimeoutError" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(pool.connections).toBe(0);
  });

  test("refuses header values that would split the request, and sets the framing headers itself", async () => {
    const { pool } = await httpServer((req, body, res) => res.end(JSON.stringify([req.headers, body])));
    await expect(
      pool.request({ method: "GET", path: "/", headers: { "x-a": "1\r\nx-b: 2" } }),
    ).rejects.toThrow(TypeError);
    const res = await pool.request({
      method: "POST",
      path: "/",
      headers: { "Content-Length": "1", Host: "elsewhere", "x-c": "3" },
      body: "abc",
    });
    const [headers, body] = JSON.parse(res.body) as [Record<string, string>, string];
    expect(body).toBe("abc");
    expect(headers).toMatchObject({ "content-length": "3", "x-c": "3" });
    expect(headers.host).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  test("close waits for a call in progress, closes its connection after, and refuses new calls", async () => {
    const { pool } = await httpServer((_req, _body, res) => setTimeout(() => res.end("late"), 30));
    await pool.request({ method: "GET", path: "/", headers: {} });
    const inFlight = pool.request({ method: "GET", path: "/", headers: {} });
    const pending = pool.request({ method: "GET", path: "/", headers: {} });
    await pool.close();
    expect(await inFlight).toMatchObject({ body: "late" });
    expect(await pending).toMatchObject({ body: "late" });
    expect(pool.connections).toBe(0);
    await expect(pool.request({ method: "GET", path: "/", headers: {} })).rejects.toThrow("fetch failed");
  });
});
