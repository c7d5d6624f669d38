import { createFileRegistry } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AppError, Code, isAppError } from "@switchboard/errors";
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  MessageService,
  ReceiveMessagesResponseSchema,
  grpcHealthV1,
  grpcReflectionV1,
} from "@switchboard/proto";
import type { ConnectResponse, ReceiveMessagesResponse } from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { createClient } from "../src/index.js";
import { sleep, startServer, waitFor } from "./support.js";

function messageClient(target: string) {
  const client = createClient(MessageService, target);
  onTestFinished(() => client.close());
  return client;
}

async function caught(run: () => Promise<unknown>): Promise<AppError> {
  try {
    await run();
  } catch (err) {
    if (isAppError(err)) return err;
    throw err;
  }
  throw new Error("expected an AppError");
}

const device = { accountId: "acc-1", deviceId: 1 };

describe("server streaming", () => {
  test("streams responses in order and ends OK", async () => {
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async receiveMessages(req, _ctx, out) {
          for (let i = 1; i <= 3; i++) {
            await out.send({ frame: { case: "envelope", value: { id: `m${i}`, destination: req.device } } });
          }
          await out.send({ frame: { case: "queueEmpty", value: { device: req.device } } });
        },
      }),
    );
    const frames: ReceiveMessagesResponse[] = [];
    for await (const frame of messageClient(target).receiveMessages({ device })) frames.push(frame);

    expect(frames.map((f) => (f.frame.case === "envelope" ? f.frame.value.id : f.frame.case))).toEqual([
      "m1",
      "m2",
      "m3",
      "queueEmpty",
    ]);
    expect(frames[0]?.frame.value?.$typeName).toBe("switchboard.common.v1.Envelope");
  });

  test("holds the handler's sends while the client does not read, and cancels when it stops", async () => {
    const total = 10_000;
    let sent = 0;
    let failure: unknown;
    let signal: AbortSignal | undefined;
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async receiveMessages(_req, ctx, out) {
          signal = ctx.signal;
          try {
            for (let i = 0; i < total; i++) {
              await out.send({
                frame: { case: "envelope", value: { id: String(i), content: new Uint8Array(16 * 1024) } },
              });
              sent++;
            }
          } catch (err) {
            failure = err;
            throw err;
          }
        },
      }),
    );

    let received = 0;
    for await (const _frame of messageClient(target).receiveMessages({ device })) {
      received++;
      await sleep(300);
      const stalledAt = sent;
      await sleep(200);
      expect(sent).toBe(stalledAt);
      expect(sent).toBeLessThan(total);
      break;
    }

    expect(received).toBe(1);
    await waitFor(() => failure !== undefined);
    expect(signal?.aborted).toBe(true);
    expect(failure).toMatchObject({ code: Code.Canceled, reason: "CANCELLED" });
  });

  test("ends the stream with the handler's AppError after the frames sent so far", async () => {
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async receiveMessages(_req, _ctx, out) {
          await out.send({ frame: { case: "queueEmpty", value: {} } });
          throw new AppError(Code.Aborted, "DISPLACED", "a newer stream took over this device");
        },
      }),
    );
    const frames: string[] = [];
    const err = await caught(async () => {
      for await (const f of messageClient(target).receiveMessages({ device }))
        frames.push(f.frame.case ?? "");
    });

    expect(frames).toEqual(["queueEmpty"]);
    expect(err).toMatchObject({ code: Code.Aborted, reason: "DISPLACED" });
  });

  test("cancels the stream when the client's signal aborts", async () => {
    let aborted: unknown;
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async receiveMessages(_req, ctx, out) {
          await out.send({ frame: { case: "queueEmpty", value: {} } });
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
          aborted = ctx.signal.reason;
        },
      }),
    );
    const controller = new AbortController();
    const err = await caught(async () => {
      for await (const _f of messageClient(target).receiveMessages(
        { device },
        { signal: controller.signal },
      )) {
        controller.abort();
      }
    });

    expect(err.code).toBe(Code.Canceled);
    await waitFor(() => aborted !== undefined);
    expect(aborted).toMatchObject({ code: Code.Canceled });
  });

  test("aborts streaming handlers with UNAVAILABLE SHUTTING_DOWN when the server closes", async () => {
    const { target, server } = await startServer((s) =>
      s.add(MessageService, {
        async receiveMessages(_req, ctx, out) {
          await out.send({ frame: { case: "queueEmpty", value: {} } });
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
          throw ctx.signal.reason;
        },
      }),
    );
    const started = Date.now();
    const err = await caught(async () => {
      for await (const _f of messageClient(target).receiveMessages({ device })) void server.close(5_000);
    });
    await server.close();

    expect(err).toMatchObject({ code: Code.Unavailable, reason: "SHUTTING_DOWN" });
    expect(Date.now() - started).toBeLessThan(4_000);
  });
});

describe("bidi streaming", () => {
  test("answers each frame and ends when both sides are done", async () => {
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async connect(requests, _ctx, out) {
          for await (const req of requests) {
            if (req.frame.case !== "send") continue;
            await out.send({
              frame: {
                case: "sendResult",
                value: { correlationId: req.frame.value.correlationId, result: { case: "send", value: {} } },
              },
            });
          }
        },
      }),
    );
    const stream = messageClient(target).connect();
    for (const id of [1n, 2n, 3n]) {
      await stream.send({
        frame: { case: "send", value: { correlationId: id, request: { clientMessageId: `c${id}` } } },
      });
    }
    stream.end();

    const results: ConnectResponse[] = [];
    for await (const res of stream.responses) results.push(res);

    expect(
      results.map((r) => (r.frame.case === "sendResult" ? r.frame.value.correlationId : undefined)),
    ).toEqual([1n, 2n, 3n]);
    await expect(stream.send({ frame: { case: "ack", value: {} } })).rejects.toMatchObject({
      reason: "STREAM_CLOSED",
    });
  });

  test("uses the method's client codec for every request and response (bidi and server streaming)", async () => {
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async connect(requests, _ctx, out) {
          for await (const req of requests) {
            if (req.frame.case !== "send") continue;
            const { correlationId } = req.frame.value;
            await out.send({
              frame: { case: "sendResult", value: { correlationId, result: { case: "send", value: {} } } },
            });
          }
        },
        async receiveMessages(_req, _ctx, out) {
          await out.send({ frame: { case: "queueEmpty", value: {} } });
          await out.send({ frame: { case: "queueEmpty", value: {} } });
        },
      }),
    );
    const calls: string[] = [];
    const client = createClient(MessageService, target, {
      codecs: {
        connect: {
          // Doubles every correlation id on the way out: the results show whose bytes went out.
          encode: (init) => {
            calls.push("encode");
            const req = create(ConnectRequestSchema, init);
            if (req.frame.case === "send") req.frame.value.correlationId *= 2n;
            return toBinary(ConnectRequestSchema, req);
          },
          decode: (bytes) => {
            calls.push("decode");
            return fromBinary(ConnectResponseSchema, bytes);
          },
        },
        receiveMessages: {
          decode: (bytes) => {
            calls.push("decode frame");
            return fromBinary(ReceiveMessagesResponseSchema, bytes);
          },
        },
      },
    });
    onTestFinished(() => client.close());

    const stream = client.connect();
    for (const id of [1n, 2n]) {
      await stream.send({ frame: { case: "send", value: { correlationId: id, request: {} } } });
    }
    stream.end();
    const ids: bigint[] = [];
    for await (const res of stream.responses) {
      if (res.frame.case === "sendResult") ids.push(res.frame.value.correlationId);
    }
    const frames: string[] = [];
    for await (const f of client.receiveMessages({ device })) frames.push(f.frame.case ?? "");

    expect(ids).toEqual([2n, 4n]);
    expect(frames).toEqual(["queueEmpty", "queueEmpty"]);
    expect(calls.sort()).toEqual(["decode", "decode", "decode frame", "decode frame", "encode", "encode"]);
  });

  test("holds client sends until the server reads (backpressure)", async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let read = 0;
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async connect(requests) {
          await released;
          for await (const _req of requests) read++;
        },
      }),
    );
    const stream = messageClient(target).connect();
    const total = 200;
    let resolved = 0;
    const content = new Uint8Array(64 * 1024);
    const sends = Array.from({ length: total }, (_, i) =>
      stream
        .send({
          frame: { case: "send", value: { correlationId: BigInt(i), request: { messages: [{ content }] } } },
        })
        .then(() => resolved++),
    );
    await sleep(300);

    expect(resolved).toBeLessThan(total);
    release();
    await Promise.all(sends);
    stream.end();
    for await (const _r of stream.responses) {
      // The server sends nothing; the loop ends with its OK status.
    }
    expect(read).toBe(total);
  });

  test("rejects sends waiting for drain once the server fails the call", async () => {
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async connect() {
          await sleep(200);
          throw new AppError(Code.Unavailable, "QUEUE_DOWN", "queue unavailable");
        },
      }),
    );
    const stream = messageClient(target).connect();
    const content = new Uint8Array(64 * 1024);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        stream.send({
          frame: { case: "send", value: { correlationId: BigInt(i), request: { messages: [{ content }] } } },
        }),
      ),
    );

    const rejected = outcomes.filter((o) => o.status === "rejected");
    expect(rejected.length).toBeGreaterThan(0);
    expect(rejected[0]?.reason).toMatchObject({ code: Code.Unavailable, reason: "QUEUE_DOWN" });
  });

  test("cancel() fails the responses with CANCELLED and aborts the handler", async () => {
    let aborted: unknown;
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async connect(_requests, ctx, out) {
          await out.send({ frame: { case: "queueEmpty", value: {} } });
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
          aborted = ctx.signal.reason;
        },
      }),
    );
    const stream = messageClient(target).connect();
    const err = await caught(async () => {
      for await (const _r of stream.responses) stream.cancel();
    });

    expect(err.code).toBe(Code.Canceled);
    await waitFor(() => aborted !== undefined);
    expect(aborted).toMatchObject({ code: Code.Canceled });
  });

  test("fails the responses with the handler's AppError", async () => {
    const { target } = await startServer((s) =>
      s.add(MessageService, {
        async connect(requests) {
          for await (const _req of requests) {
            throw new AppError(Code.PermissionDenied, "APP_MISMATCH", "device belongs to another app");
          }
        },
      }),
    );
    const stream = messageClient(target).connect();
    await stream.send({ frame: { case: "subscribe", value: { device } } });

    const err = await caught(async () => {
      for await (const _r of stream.responses) {
        // No frames before the error.
      }
    });
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
    await expect(stream.send({ frame: { case: "ack", value: {} } })).rejects.toMatchObject({
      reason: "APP_MISMATCH",
    });
  });
});

describe("client streaming", () => {
  // No Switchboard proto has a client-streaming RPC: describe one over existing messages.
  const registry = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "switchboard/test/v1/collect.proto",
      package: "switchboard.test.v1",
      syntax: "proto3",
      dependency: ["grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto"],
      service: [
        {
          name: "CollectService",
          method: [
            {
              name: "Collect",
              inputType: ".grpc.health.v1.HealthCheckRequest",
              outputType: ".grpc.reflection.v1.ListServiceResponse",
              clientStreaming: true,
            },
          ],
        },
      ],
    }),
    (name) =>
      name === "grpc/health/v1/health.proto"
        ? grpcHealthV1.file_grpc_health_v1_health
        : name === "grpc/reflection/v1/reflection.proto"
          ? grpcReflectionV1.file_grpc_reflection_v1_reflection
          : undefined,
  );
  const CollectService = registry.getService("switchboard.test.v1.CollectService") as unknown as GenService<{
    collect: {
      methodKind: "client_streaming";
      input: typeof grpcHealthV1.HealthCheckRequestSchema;
      output: typeof grpcReflectionV1.ListServiceResponseSchema;
    };
  }>;

  test("reads every request and answers once", async () => {
    const { target } = await startServer((s) =>
      s.add(CollectService, {
        async collect(requests) {
          const service: { name: string }[] = [];
          for await (const req of requests) service.push({ name: req.service });
          return { service };
        },
      }),
    );
    const client = createClient(CollectService, target);
    onTestFinished(() => client.close());

    async function* names() {
      yield { service: "a" };
      await sleep(10);
      yield { service: "b" };
    }
    const res = await client.collect(names());

    expect(res.service.map((s) => s.name)).toEqual(["a", "b"]);
  });
});
