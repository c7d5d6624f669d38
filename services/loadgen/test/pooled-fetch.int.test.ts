import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, onTestFinished, test } from "vitest";
import { createPooledFetch } from "../src/drivers/pooled-fetch.js";

/** A local HTTP server answering with `handler`; closed (with the pools) when the test ends. */
async function serve(handler: (req: IncomingMessage, body: string, res: ServerResponse) => void) {
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => handler(req, body, res));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const pooled = createPooledFetch();
  onTestFinished(async () => {
    await pooled.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, fetch: pooled.fetch };
}

describe("createPooledFetch", () => {
  test("sends method, headers and body and returns status, headers and the JSON body", async () => {
    const { url, fetch } = await serve((req, body, res) => {
      res.writeHead(201, { "content-type": "application/json", "x-seen": String(req.headers.authorization) });
      res.end(JSON.stringify({ method: req.method, path: req.url, body: JSON.parse(body) as unknown }));
    });
    const res = await fetch(`${url}/v1/me/messages`, {
      method: "POST",
      headers: { authorization: "Bearer t", "content-type": "application/json" },
      body: JSON.stringify({ a: 1 }),
    });
    expect(res.status).toBe(201);
    expect(res.ok).toBe(true);
    expect(res.statusText).toBe("Created");
    expect(res.headers.get("x-seen")).toBe("Bearer t");
    expect(await res.json()).toEqual({ method: "POST", path: "/v1/me/messages", body: { a: 1 } });
  });

  test("returns problem answers and bodiless answers", async () => {
    const { url, fetch } = await serve((req, _body, res) => {
      if (req.url === "/empty") {
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(409, { "content-type": "application/problem+json", "retry-after": "2" });
      res.end(JSON.stringify({ reason: "DEVICES_CHANGED" }));
    });
    const problem = await fetch(`${url}/x`, { method: "GET" });
    expect(problem.ok).toBe(false);
    expect(problem.status).toBe(409);
    expect(problem.headers.get("retry-after")).toBe("2");
    expect(await problem.json()).toEqual({ reason: "DEVICES_CHANGED" });
    const empty = await fetch(`${url}/empty`, { method: "POST", body: "{}" });
    expect(empty.status).toBe(204);
    expect(await empty.text()).toBe("");
  });

  test("a response read whole: repeated headers, a body that is not JSON rejects json()", async () => {
    const { url, fetch } = await serve((_req, _body, res) => {
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.writeHead(502, { "content-type": "text/plain" });
      res.end("bad gateway");
    });
    const res = await fetch(`${url}/x`);
    expect(res.ok).toBe(false);
    expect(res.statusText).toBe("Bad Gateway");
    expect(res.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
    expect(res.body).toBeNull();
    await expect(res.json()).rejects.toThrow(SyntaxError);
    expect(await res.text()).toBe("bad gateway");
  });

  test("streams an event stream before it ends, and the signal ends it", async () => {
    const { url, fetch } = await serve((_req, _body, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("event: item\ndata: 1\n\n");
    });
    const controller = new AbortController();
    const res = await fetch(`${url}/v1/direct/events`, {
      headers: { accept: "text/event-stream" },
      signal: controller.signal,
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe("event: item\ndata: 1\n\n");
    controller.abort();
    await expect(reader.read()).rejects.toThrow();
  });

  test("sends the request target fetch would: unencoded characters encoded, fragments dropped, IPv6 hosts", async () => {
    const { url, fetch } = await serve((req, _body, res) =>
      res.end(JSON.stringify([req.url, req.headers.host])),
    );
    for (const path of ["/v1/users/a%20b?x=1", "/v1/users/ä b?q=ü#frag", "/v1/x?y=[1]"]) {
      const ours = (await (await fetch(`${url}${path}`)).json()) as [string, string];
      const theirs = (await (await globalThis.fetch(`${url}${path}`)).json()) as [string, string];
      expect(ours, path).toEqual(theirs);
    }
    const v6 = createServer((req, res) => res.end(req.headers.host));
    await new Promise<void>((resolve) => v6.listen(0, "::1", resolve));
    const port = (v6.address() as AddressInfo).port;
    try {
      expect(await (await fetch(`http://[::1]:${port}/`)).text()).toBe(`[::1]:${port}`);
    } finally {
      v6.closeAllConnections();
      await new Promise((resolve) => v6.close(resolve));
    }
    await expect(fetch(`${url}/x`, { method: "GET", body: "{}" })).rejects.toThrow(TypeError);
  });

  test("rejects with the signal's reason when the server does not answer in time", async () => {
    const { url, fetch } = await serve(() => {
      // Never answers.
    });
    await expect(fetch(`${url}/slow`, { signal: AbortSignal.timeout(50) })).rejects.toMatchObject({
      name: "TimeoutError",
    });
  });
});
