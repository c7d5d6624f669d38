import { describe, expect, test } from "vitest";
import { createLogger } from "./index.js";
import type { LoggerOptions } from "./index.js";

/** A logger writing to memory, and the JSON lines it has written so far. */
function memoryLogger(options: Partial<LoggerOptions> = {}) {
  const chunks: string[] = [];
  const log = createLogger({
    service: "delivery",
    version: "1.2.3",
    level: "info",
    destination: { write: (chunk) => void chunks.push(chunk) },
    ...options,
  });
  const lines = () =>
    chunks
      .join("")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { log, lines };
}

describe("createLogger", () => {
  test("writes JSON lines with service, version and an ISO time", () => {
    const { log, lines } = memoryLogger();
    log.info({ messageId: "m1" }, "message enqueued");
    const [line] = lines();
    expect(line).toMatchObject({
      level: 30,
      service: "delivery",
      version: "1.2.3",
      messageId: "m1",
      msg: "message enqueued",
    });
    expect(line?.time).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/));
    expect(line).not.toHaveProperty("pid");
    expect(line).not.toHaveProperty("hostname");
  });

  test("drops lines below its level", () => {
    const { log, lines } = memoryLogger({ level: "warn" });
    log.info("hidden");
    log.warn("shown");
    expect(lines().map((line) => line.msg)).toEqual(["shown"]);
  });

  test("redacts authorization, credentials and payloads at the top level and one level down", () => {
    const { log, lines } = memoryLogger();
    const secrets = {
      ciphertext: "c",
      content: "c",
      token: "t",
      password: "p",
      secret: "s",
      credential: "k",
    };
    log.info(
      {
        authorization: "Bearer a",
        req: { headers: { authorization: "Bearer b", host: "h" } },
        headers: { authorization: "Bearer c" },
        ...secrets,
        body: { ...secrets, messageId: "m1" },
        sizeBytes: 12,
      },
      "request",
    );
    const [line] = lines();
    const censored = Object.fromEntries(Object.keys(secrets).map((key) => [key, "[redacted]"]));
    expect(line).toMatchObject({
      authorization: "[redacted]",
      req: { headers: { authorization: "[redacted]", host: "h" } },
      headers: { authorization: "[redacted]" },
      ...censored,
      body: { ...censored, messageId: "m1" },
      sizeBytes: 12,
    });
  });

  test("redacts the gateways' token and payload field spellings", () => {
    const { log, lines } = memoryLogger();
    const secrets = {
      access_token: "a",
      accessToken: "b",
      appToken: "c",
      app_token: "d",
      ciphertexts: ["e"],
      identity_key: "f",
      private_key: "g",
    };
    log.info({ ...secrets, query: { ...secrets }, userId: "u1" }, "request");
    const censored = Object.fromEntries(Object.keys(secrets).map((key) => [key, "[redacted]"]));
    expect(lines()[0]).toMatchObject({ ...censored, query: censored, userId: "u1" });
  });

  test("gives child loggers their bindings and the same redaction", () => {
    const { log, lines } = memoryLogger();
    const child = log.child({ rpc: "Send", requestId: "req-1" });
    child.info({ token: "t", deviceCount: 2 }, "message enqueued");
    expect(lines()[0]).toMatchObject({
      service: "delivery",
      version: "1.2.3",
      rpc: "Send",
      requestId: "req-1",
      token: "[redacted]",
      deviceCount: 2,
      msg: "message enqueued",
    });
  });
});
