import { createServer, get, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createWriteCoalescer, type Corkable } from "@switchboard/gateway-http";
import { describe, expect, onTestFinished, test } from "vitest";
import { MAX_BUFFERED_BYTES, SseConnection } from "./sse-connection.js";

/** An SSE response served to a real HTTP client on loopback, and the client's response. */
async function connection(
  holdWrites?: (stream: Corkable) => void,
): Promise<{ conn: SseConnection; client: IncomingMessage; res: ServerResponse }> {
  let served!: (c: { conn: SseConnection; res: ServerResponse }) => void;
  const ready = new Promise<{ conn: SseConnection; res: ServerResponse }>((resolve) => (served = resolve));
  const server = createServer((_req, res: ServerResponse) => {
    const conn = new SseConnection({ accountId: "a", deviceId: 1 }, res, holdWrites);
    conn.open();
    served({ conn, res });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  const client = await new Promise<IncomingMessage>((resolve, reject) =>
    get(`http://127.0.0.1:${port}/`, resolve).on("error", reject),
  );
  client.on("error", () => undefined);
  return { ...(await ready), client };
}

describe("SseConnection", () => {
  test("suggests a reconnect delay between 2 and 5 s", async () => {
    const { client } = await connection();
    const first = await new Promise<string>((resolve) =>
      client.once("data", (b: Buffer) => resolve(b.toString())),
    );
    const retry = Number(/^retry: (\d+)/.exec(first)?.[1]);
    expect(retry).toBeGreaterThanOrEqual(2000);
    expect(retry).toBeLessThan(5000);
  });

  test("drops a client that stopped reading once more than MAX_BUFFERED_BYTES wait unsent", async () => {
    const { conn, client } = await connection();
    client.pause();
    const body = "x".repeat(64 * 1024);
    // Four times the limit: the kernel's socket buffers take a few MiB, the rest waits in the
    // response until the limit trips.
    const events = Math.ceil((4 * MAX_BUFFERED_BYTES) / body.length);
    let sent = 0;
    for (; sent < events && !conn.closed; sent++) conn.send("item", { body });
    expect(conn.closed).toBe(true);
    expect(sent).toBeLessThan(events);
  });

  test("keeps a client that reads", async () => {
    const { conn, client } = await connection();
    let received = 0;
    client.on("data", (b: Buffer) => (received += b.length));
    const body = "x".repeat(1024);
    for (let i = 0; i < 100; i++) conn.send("item", { body });
    await new Promise<void>((resolve) => {
      const check = () => (received > 100 * 1024 ? resolve() : setTimeout(check, 10));
      check();
    });
    expect(conn.closed).toBe(false);
  });

  test("holds the events of one tick for one write, and sends them after it", async () => {
    const { conn, client, res } = await connection(createWriteCoalescer());
    let text = "";
    client.on("data", (b: Buffer) => (text += b.toString()));
    conn.send("item", { n: 1 });
    conn.send("item", { n: 2 });
    expect(res.writableCorked).toBe(1);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(res.writableCorked).toBe(0);
    await new Promise<void>((resolve) => {
      const check = () => (text.includes('{"n":2}') ? resolve() : setTimeout(check, 5));
      check();
    });
    expect(text).toMatch(/data: \{"n":1\}\n\n.*event: item\ndata: \{"n":2\}\n\n/s);
  });
});
