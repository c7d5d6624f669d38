import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import { rejection } from "@switchboard/testkit";
import {
  App,
  DirectoryService,
  ResolveHandleRequestSchema,
  ResolveHandleResponseSchema,
} from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { createClient, Encoded, errorFromServiceError } from "../src/index.js";
import type { CallContext } from "../src/index.js";
import { KNOWN_ACCOUNT, fakeDirectory, startServer, waitFor } from "./support.js";

function directoryClient(target: string) {
  const client = createClient(DirectoryService, target, {
    metadata: () => ({ authorization: "Bearer app-token" }),
  });
  onTestFinished(() => client.close());
  return client;
}

describe("unary calls", () => {
  test("round-trips a request and response with typed messages", async () => {
    const seen: CallContext[] = [];
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory(seen)));
    const client = directoryClient(target);

    const res = await client.resolveHandle(
      { handle: { app: App.WHATSAPP, value: "+15551234567" } },
      { metadata: { "x-request-id": "req-7Gx2" } },
    );

    expect(res.result.case).toBe("found");
    if (res.result.case !== "found") return;
    expect(res.result.value.account?.id).toBe(KNOWN_ACCOUNT.id);
    expect(res.result.value.devices.map((d) => d.registrationId)).toEqual([4242]);
    const ctx = seen[0];
    expect(ctx?.rpc).toBe("switchboard.delivery.v1.DirectoryService/ResolveHandle");
    expect(ctx?.requestId).toBe("req-7Gx2");
    expect(ctx?.metadata.get("authorization")).toEqual(["Bearer app-token"]);
    expect(ctx?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(ctx?.signal.aborted).toBe(false);

    const missing = await client.resolveHandle({ handle: { app: App.WHATSAPP, value: "+15550000000" } });
    expect(missing.result.case).toBe("notFound");
    expect(seen[1]?.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("delivers an AppError's code, reason, message and metadata to the client", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const client = directoryClient(target);

    const err = await rejection(client.getAccount({ accountId: "acc-9" }));

    expect(err.code).toBe(Code.NotFound);
    expect(err.reason).toBe("ACCOUNT_NOT_FOUND");
    expect(err.message).toBe("account acc-9 not found");
    expect(err.metadata).toEqual({ accountId: "acc-9" });
    expect(err.retryAfterMs).toBeUndefined();
  });

  test("carries retryAfterMs as RetryInfo", async () => {
    const { target } = await startServer((s) =>
      s.add(DirectoryService, {
        async registerDevice() {
          throw new AppError(Code.ResourceExhausted, "RATE_LIMITED", "slow down", { retryAfterMs: 1500 });
        },
      }),
    );
    const err = await rejection(directoryClient(target).registerDevice({ accountId: "a" }));

    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.reason).toBe("RATE_LIMITED");
    expect(err.retryAfterMs).toBe(1500);
  });

  test("turns an unexpected error into INTERNAL without leaking its message", async () => {
    const { target, lines } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const client = directoryClient(target);

    const err = await rejection(client.registerAccount({ password: "x".repeat(16) }));

    expect(err.code).toBe(Code.Internal);
    expect(err.reason).toBe("INTERNAL");
    expect(err.message).toBe("internal error");
    expect(JSON.stringify(err.metadata)).not.toContain("hunter2");
    const cause = err.cause as grpc.ServiceError;
    expect(cause.details).toBe("internal error");
    const logged = lines.find((l) => l.msg === "rpc finished" && l.code === "INTERNAL");
    expect(logged?.level).toBe(50);
    expect((logged?.err as { stack?: string } | undefined)?.stack).toContain("hunter2");
  });

  test("answers UNIMPLEMENTED for methods without a handler", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));

    const err = await rejection(directoryClient(target).removeDevice({ accountId: "a", deviceId: 2 }));

    expect(err.code).toBe(Code.Unimplemented);
    expect(err.reason).toBe("UNIMPLEMENTED");
  });

  test("rejects undecodable request bytes with INVALID_ARGUMENT MALFORMED_REQUEST", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const raw = new grpc.Client(target, grpc.credentials.createInsecure());
    onTestFinished(() => raw.close());
    const identity = (b: Buffer) => b;

    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      // Field 1, length-delimited, claims 5 bytes but the message ends.
      raw.makeUnaryRequest(
        "/switchboard.delivery.v1.DirectoryService/ResolveHandle",
        identity,
        identity,
        Buffer.from([0x0a, 0x05, 0x01]),
        (e) => resolve(e),
      );
    });

    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err && errorFromServiceError(err).reason).toBe("MALFORMED_REQUEST");
  });

  test("uses a method's own request decoder; one that throws is MALFORMED_REQUEST", async () => {
    const decoded: number[] = [];
    const { target } = await startServer((s) =>
      s.add(DirectoryService, fakeDirectory(), {
        decoders: {
          resolveHandle: (bytes) => {
            decoded.push(bytes.length);
            if (bytes.length > 40) throw new Error("too long for this decoder");
            return fromBinary(ResolveHandleRequestSchema, bytes);
          },
        },
      }),
    );
    const client = directoryClient(target);
    const res = await client.resolveHandle({ handle: { app: App.WHATSAPP, value: "+15551234567" } });
    expect(res.result.case).toBe("found");
    expect(decoded).toHaveLength(1);
    const err = await rejection(
      client.resolveHandle({ handle: { app: App.WHATSAPP, value: "x".repeat(60) } }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.reason).toBe("MALFORMED_REQUEST");
    expect(decoded).toHaveLength(2);
    // Other methods keep protobuf-es.
    await rejection(client.getAccount({ accountId: "acc-9" }));
    expect(decoded).toHaveLength(2);
  });

  test("a handler may answer with the response already encoded (Encoded), written as is", async () => {
    const wire = toBinary(
      ResolveHandleResponseSchema,
      create(ResolveHandleResponseSchema, {
        result: { case: "found", value: { account: KNOWN_ACCOUNT, devices: [{ deviceId: 3 }] } },
      }),
    );
    const { target } = await startServer((s) =>
      s.add(DirectoryService, {
        async resolveHandle() {
          return new Encoded<typeof ResolveHandleResponseSchema>(wire);
        },
      }),
    );
    const res = await directoryClient(target).resolveHandle({ handle: { app: App.WHATSAPP, value: "+1" } });
    expect(toBinary(ResolveHandleResponseSchema, res)).toEqual(wire);
    expect(res.result.case === "found" && res.result.value.devices[0]?.deviceId).toBe(3);
  });

  test("a decoder for a method the service lacks is a startup error", async () => {
    await expect(
      startServer((s) =>
        s.add(DirectoryService, fakeDirectory(), {
          decoders: {
            noSuchMethod: () => {
              throw new Error("unused");
            },
          },
        }),
      ),
    ).rejects.toThrow(/has no method "noSuchMethod"/);
  });

  test("uses a method's own client codec for its request and response; other methods keep protobuf-es", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const encoded: unknown[] = [];
    let decoded = 0;
    const client = createClient(DirectoryService, target, {
      codecs: {
        resolveHandle: {
          // Sends the known handle whatever the caller asked for: the answer shows whose bytes went out.
          encode: (init) => {
            encoded.push(init);
            return toBinary(
              ResolveHandleRequestSchema,
              create(ResolveHandleRequestSchema, { handle: KNOWN_ACCOUNT.handle }),
            );
          },
          decode: (bytes) => {
            decoded++;
            return fromBinary(ResolveHandleResponseSchema, bytes);
          },
        },
      },
    });
    onTestFinished(() => client.close());

    const res = await client.resolveHandle({ handle: { app: App.WHATSAPP, value: "+15550000000" } });

    expect(res.result.case).toBe("found");
    expect(encoded).toEqual([{ handle: { app: App.WHATSAPP, value: "+15550000000" } }]);
    expect(decoded).toBe(1);
    await rejection(client.getAccount({ accountId: "acc-9" }));
    expect(encoded).toHaveLength(1);
    expect(decoded).toBe(1);
  });

  test("a client codec for a method the service lacks is an error", () => {
    expect(() =>
      createClient(DirectoryService, "127.0.0.1:1", {
        codecs: { noSuchMethod: {} } as Record<string, object>,
      }),
    ).toThrow(/has no method "noSuchMethod"/);
  });

  test("rejects a request over maxReceiveMessageBytes with RESOURCE_EXHAUSTED", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()), {
      maxReceiveMessageBytes: 1024,
    });

    const err = await rejection(
      directoryClient(target).resolveHandle({ handle: { app: App.WHATSAPP, value: "x".repeat(2048) } }),
    );

    expect(err.code).toBe(Code.ResourceExhausted);
  });

  test("fails DEADLINE_EXCEEDED and aborts the handler's signal", async () => {
    let aborted: unknown;
    let deadline: Date | undefined;
    const { target, lines } = await startServer((s) =>
      s.add(DirectoryService, {
        async getAccount(_req, ctx) {
          deadline = ctx.deadline;
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
          aborted = ctx.signal.reason;
          throw ctx.signal.reason;
        },
      }),
    );

    const err = await rejection(directoryClient(target).getAccount({ accountId: "a" }, { deadlineMs: 150 }));

    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(deadline).toBeInstanceOf(Date);
    await waitFor(() => aborted !== undefined);
    expect(aborted).toMatchObject({ code: Code.DeadlineExceeded });
    await waitFor(() => lines.some((l) => l.msg === "rpc finished" && l.code === "DEADLINE_EXCEEDED"));
  });

  test("cancels the call when the client's signal aborts", async () => {
    let aborted: unknown;
    const { target } = await startServer((s) =>
      s.add(DirectoryService, {
        async getAccount(_req, ctx) {
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
          aborted = ctx.signal.reason;
          return {};
        },
      }),
    );
    const controller = new AbortController();
    const pending = rejection(
      directoryClient(target).getAccount({ accountId: "a" }, { signal: controller.signal }),
    );
    setTimeout(() => controller.abort(), 50);

    expect((await pending).code).toBe(Code.Canceled);
    await waitFor(() => aborted !== undefined);
    expect(aborted).toMatchObject({ code: Code.Canceled });
  });

  test("logs one line per finished call and reports it to onCallEnd", async () => {
    const { target, lines, callEnds } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const client = directoryClient(target);

    await client.resolveHandle(
      { handle: { app: App.WHATSAPP, value: "+1" } },
      { metadata: { "x-request-id": "r-1" } },
    );
    await rejection(client.getAccount({ accountId: "a" }));

    const finished = lines.filter((l) => l.msg === "rpc finished");
    expect(finished).toHaveLength(2);
    expect(finished[0]).toMatchObject({
      level: 30,
      rpc: "switchboard.delivery.v1.DirectoryService/ResolveHandle",
      requestId: "r-1",
      code: "OK",
    });
    expect(typeof finished[0]?.durationMs).toBe("number");
    expect(finished[1]).toMatchObject({ level: 30, code: "NOT_FOUND", reason: "ACCOUNT_NOT_FOUND" });
    expect(finished[1]?.err).toBeUndefined();
    expect(callEnds.map((e) => [e.rpc, e.code])).toEqual([
      ["switchboard.delivery.v1.DirectoryService/ResolveHandle", 0],
      ["switchboard.delivery.v1.DirectoryService/GetAccount", Code.NotFound],
    ]);
  });

  test("lets several clients share one channel", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const channel = new grpc.Channel(target, grpc.credentials.createInsecure(), {});
    onTestFinished(() => channel.close());
    const a = createClient(DirectoryService, channel);
    const b = createClient(DirectoryService, channel);

    a.close(); // leaves the shared channel open
    const [ra, rb] = await Promise.all([
      a.resolveHandle({ handle: KNOWN_ACCOUNT.handle }),
      b.resolveHandle({ handle: KNOWN_ACCOUNT.handle }),
    ]);

    expect([ra.result.case, rb.result.case]).toEqual(["found", "found"]);
  });

  test("rejects a handler for a method the service lacks", async () => {
    await startServer((s) => {
      expect(() => s.add(DirectoryService, { nope: async () => ({}) } as never)).toThrow(/no method "nope"/);
    });
  });
});
