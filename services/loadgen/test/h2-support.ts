// What the lean HTTP/2 clients' tests share: servers to talk to and how an error is compared.
import http2 from "node:http2";
import { createServer, type AddressInfo } from "node:net";
import type { AppError } from "@switchboard/errors";
import { onTestFinished } from "vitest";

/** What a caller sees of an AppError (to compare the lean clients' errors with grpc-js's). */
export const visible = (err: AppError) => ({
  code: err.code,
  reason: err.reason,
  message: err.message,
  metadata: err.metadata,
  retryAfterMs: err.retryAfterMs,
});

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A plain HTTP/2 server answering each stream as `answer` does, by its `x-scenario` header; its
 * sessions are listed as they open. With `readRequests` it reads (and drops) each request body,
 * as a unary server does. Closed after the test.
 */
export async function rawServer(
  answer: (stream: http2.ServerHttp2Stream, scenario: string) => void,
  { readRequests = false } = {},
) {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  server.on("session", (s) => sessions.push(s));
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    if (readRequests) stream.resume();
    answer(stream, String(headers["x-scenario"]));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { target: `127.0.0.1:${(server.address() as AddressInfo).port}`, sessions };
}
