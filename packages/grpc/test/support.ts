// Test support: an in-memory pino logger and a real server on port 0, closed when the test ends.
import { Writable } from "node:stream";
import { onTestFinished } from "vitest";
import { pino } from "pino";
import type { Logger } from "pino";
import { AppError, Code } from "@switchboard/errors";
import { create } from "@bufbuild/protobuf";
import { App, ResolveHandleResponseSchema } from "@switchboard/proto";
import type { DirectoryService } from "@switchboard/proto";
import { createGrpcServer } from "../src/index.js";
import type { CallContext, CallEndEvent, GrpcServer, ServiceImpl } from "../src/index.js";

/** One parsed log line. */
export type LogLine = Record<string, unknown> & { level: number; msg: string };

/** A debug-level pino logger that keeps its lines in memory. */
export function memoryLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim() !== "") lines.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines };
}

/** A started server with its address, log lines and call-end events. */
export interface TestServer {
  server: GrpcServer;
  target: string;
  port: number;
  lines: LogLine[];
  callEnds: CallEndEvent[];
}

/** Creates a server, lets `setup` add services, listens on 127.0.0.1:0 and closes it after the test. */
export async function startServer(
  setup: (server: GrpcServer) => void,
  options: { maxReceiveMessageBytes?: number } = {},
): Promise<TestServer> {
  const { log, lines } = memoryLogger();
  const callEnds: CallEndEvent[] = [];
  const server = createGrpcServer({ log, onCallEnd: (e) => callEnds.push(e), ...options });
  setup(server);
  const port = await server.listen("127.0.0.1", 0);
  onTestFinished(() => server.close(100));
  return { server, target: `127.0.0.1:${port}`, port, lines, callEnds };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await sleep(10);
  }
}

/** The one account the fake directory knows. */
export const KNOWN_ACCOUNT = {
  id: "0b9d6a52-6a9a-4d0e-9a55-3f3f6a1c2b11",
  handle: { app: App.WHATSAPP, value: "+15551234567" },
  createdAtMs: 1_700_000_000_000n,
} as const;

/**
 * A fake DirectoryService: resolveHandle works, getAccount fails with an AppError,
 * registerAccount with an unexpected Error; the other methods are left unimplemented.
 */
export function fakeDirectory(seen: CallContext[] = []): Partial<ServiceImpl<typeof DirectoryService>> {
  return {
    async resolveHandle(req, ctx) {
      seen.push(ctx);
      if (req.handle?.app !== KNOWN_ACCOUNT.handle.app || req.handle.value !== KNOWN_ACCOUNT.handle.value) {
        return create(ResolveHandleResponseSchema, { result: { case: "notFound", value: {} } });
      }
      return {
        result: {
          case: "found",
          value: { account: KNOWN_ACCOUNT, devices: [{ deviceId: 1, registrationId: 4242, name: "phone" }] },
        },
      };
    },
    async getAccount(req) {
      throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${req.accountId} not found`, {
        metadata: { accountId: req.accountId },
      });
    },
    async registerAccount() {
      throw new Error("connect postgres://admin:hunter2@db failed");
    },
  };
}
