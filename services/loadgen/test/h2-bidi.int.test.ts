import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import {
  appErrorToStatus,
  createClient,
  createGrpcServer,
  methodPath,
  STATUS_DETAILS_KEY,
  type BidiStream,
  type BidiStreamingImpl,
} from "@switchboard/grpc";
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  MessageService,
  type ConnectResponse,
} from "@switchboard/proto";
import { rejection } from "@switchboard/testkit";
import { describe, expect, onTestFinished, test } from "vitest";
import { openH2Bidi } from "../src/drivers/h2-bidi.js";
import { createH2Connector, grpcFrame } from "../src/drivers/h2-grpc.js";
import { log } from "./delivery-instance.js";
import { closedPort, rawServer, visible } from "./h2-support.js";

const CONNECT = methodPath(MessageService.method.connect);
type Req = typeof ConnectRequestSchema;
type Res = typeof ConnectResponseSchema;
type RequestInit = MessageInitShape<Req>;

const encode = (init: RequestInit) => toBinary(ConnectRequestSchema, create(ConnectRequestSchema, init));
const decode = (bytes: Uint8Array) => fromBinary(ConnectResponseSchema, bytes);

/** A lean bidi call to `target`; its session is closed after the test. */
function h2Call(target: string, metadata: Record<string, string> = {}): BidiStream<Req, Res> {
  const connector = createH2Connector(target);
  onTestFinished(() => connector.close());
  return openH2Bidi(connector, { path: CONNECT, metadata, encode, decode });
}

/** The same call over grpc-js (`createClient`), for comparison. */
function grpcJsCall(target: string, metadata: Record<string, string> = {}): BidiStream<Req, Res> {
  const client = createClient(MessageService, target, { metadata: () => metadata });
  onTestFinished(() => client.close());
  return client.connect();
}

const both = (target: string, metadata: Record<string, string> = {}) => ({
  h2: h2Call(target, metadata),
  grpcJs: grpcJsCall(target, metadata),
});

const ack = (id: string): RequestInit => ({ frame: { case: "ack", value: { messageIds: [id] } } });
const idOf = (r: ConnectResponse) => (r.frame.case === "delivery" ? r.frame.value.id : String(r.frame.case));

/** Reads every response; the error it ends with, if any. */
async function drain(call: BidiStream<Req, Res>): Promise<{ ids: string[]; error?: AppError }> {
  const ids: string[] = [];
  try {
    for await (const r of call.responses) ids.push(idOf(r));
    return { ids };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { ids, error: err };
  }
}

/** A gRPC server whose Connect handler is `connect`; closed after the test. */
async function grpcServer(connect: BidiStreamingImpl<Req, Res>): Promise<string> {
  const server = createGrpcServer({ log });
  server.add(MessageService, { connect });
  const port = await server.listen("127.0.0.1", 0);
  onTestFinished(() => server.close(100));
  return `127.0.0.1:${port}`;
}

/** Echoes each ack's first id back as a delivery with `contentBytes` of content, then ends OK. */
const echo =
  (contentBytes = 0): BidiStreamingImpl<Req, Res> =>
  async (requests, _ctx, out) => {
    for await (const req of requests) {
      if (req.frame.case !== "ack") continue;
      const id = req.frame.value.messageIds[0] ?? "";
      await out.send({ frame: { case: "delivery", value: { id, content: new Uint8Array(contentBytes) } } });
    }
  };

const delivery = (id: string) =>
  grpcFrame(
    toBinary(
      ConnectResponseSchema,
      create(ConnectResponseSchema, { frame: { case: "delivery", value: { id } } }),
    ),
  );

describe("openH2Bidi", () => {
  test("exchanges messages both ways and ends OK after a half-close, as grpc-js does", async () => {
    const target = await grpcServer(echo());
    for (const call of Object.values(both(target))) {
      for (let i = 0; i < 50; i++) await call.send(ack(`m${i}`));
      call.end();
      const { ids, error } = await drain(call);
      expect(error).toBeUndefined();
      expect(ids).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
      // After the end: no more sends.
      expect(visible(await rejection(call.send(ack("late"))))).toMatchObject({
        code: Code.FailedPrecondition,
        reason: "STREAM_CLOSED",
      });
    }
  });

  test("carries large messages split over many HTTP/2 frames, with backpressure, in order", async () => {
    const target = await grpcServer(echo(40_000));
    const call = h2Call(target);
    const total = 500;
    const reading = drain(call);
    // Request ids of 20 kB: every message spans two DATA frames at the default 16 kB frame size.
    const big = "x".repeat(20_000);
    for (let i = 0; i < total; i++) await call.send(ack(`${i}:${big}`));
    call.end();
    const { ids, error } = await reading;
    expect(error).toBeUndefined();
    expect(ids.map((id) => id.split(":")[0])).toEqual(Array.from({ length: total }, (_, i) => String(i)));
  });

  test("holds responses while the reader waits, then hands them over in order", async () => {
    const total = 2_000;
    let sent = 0;
    const target = await grpcServer(async (_requests, _ctx, out) => {
      for (; sent < total; sent++)
        await out.send({
          frame: { case: "delivery", value: { id: String(sent), content: new Uint8Array(1024) } },
        });
    });
    const call = h2Call(target);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The stream stopped reading once its read-ahead was full: HTTP/2 flow control held the server.
    expect(sent).toBeLessThan(total / 4);
    const { ids, error } = await drain(call);
    expect(error).toBeUndefined();
    expect(ids).toEqual(Array.from({ length: total }, (_, i) => String(i)));
  });

  test("fails with the server's status and details after the responses sent before it", async () => {
    const target = await grpcServer(async (_requests, _ctx, out) => {
      await out.send({ frame: { case: "delivery", value: { id: "a" } } });
      await out.send({ frame: { case: "delivery", value: { id: "b" } } });
      throw new AppError(Code.ResourceExhausted, "RECIPIENT_QUEUE_FULL", "queue full: 100% (of 10)", {
        metadata: { deviceId: "1" },
        retryAfterMs: 1500,
      });
    });
    const seen = [];
    for (const call of Object.values(both(target))) {
      const { ids, error } = await drain(call);
      expect(ids).toEqual(["a", "b"]);
      seen.push(visible(error!));
      // A failed call's sends reject with its status.
      expect(visible(await rejection(call.send(ack("x"))))).toEqual(visible(error!));
    }
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toEqual({
      code: Code.ResourceExhausted,
      reason: "RECIPIENT_QUEUE_FULL",
      message: "queue full: 100% (of 10)",
      metadata: { deviceId: "1" },
      retryAfterMs: 1500,
    });
  });

  test("cancel() and leaving the loop early cancel the call at the server", async () => {
    let aborted = 0;
    const target = await grpcServer(async (_requests, ctx, out) => {
      await out.send({ frame: { case: "delivery", value: { id: "r" } } });
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      aborted++;
    });
    const left = h2Call(target);
    for await (const r of left.responses) {
      expect(idOf(r)).toBe("r");
      break;
    }
    await expect.poll(() => aborted).toBe(1);
    expect(visible(await rejection(left.send(ack("1"))))).toMatchObject({ code: Code.Canceled });

    const cancelled = h2Call(target);
    const reading = drain(cancelled);
    await new Promise((resolve) => setTimeout(resolve, 50));
    cancelled.cancel();
    const { ids, error } = await reading;
    expect(ids).toEqual(["r"]);
    expect(error).toMatchObject({ code: Code.Canceled, reason: "CANCELLED" });
    expect(visible(await rejection(cancelled.send(ack("2"))))).toMatchObject({ code: Code.Canceled });
    await expect.poll(() => aborted).toBe(2);
  });

  test("fails INTERNAL on a response that does not decode, and resets the stream", async () => {
    let reset: number | undefined;
    const { target } = await rawServer((stream) => {
      stream.on("close", () => (reset = stream.rstCode));
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.write(delivery("ok"));
      stream.write(grpcFrame(new Uint8Array([0xff, 0xff, 0xff])));
    });
    const { ids, error } = await drain(h2Call(target));
    expect(ids).toEqual(["ok"]);
    expect(error).toMatchObject({ code: Code.Internal, reason: "INTERNAL" });
    await expect.poll(() => reset).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  test("maps resets, HTTP errors and statuses without a message as grpc-js does", async () => {
    const details = appErrorToStatus(
      new AppError(Code.NotFound, "GROUP_NOT_FOUND", "x", { metadata: { a: "b" } }),
    ).metadata.get(STATUS_DETAILS_KEY)[0] as Buffer;
    const grpcHeaders = { ":status": 200, "content-type": "application/grpc" };
    const { target } = await rawServer((stream, scenario) => {
      switch (scenario) {
        case "cancel":
          return stream.close(http2.constants.NGHTTP2_CANCEL);
        case "refused":
          return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        case "http-503":
          stream.respond({ ":status": 503 });
          return stream.end("busy");
        case "no-status":
          stream.respond(grpcHeaders);
          return stream.end(delivery("a"));
        case "trailers-only":
          return stream.respond(
            {
              ...grpcHeaders,
              "grpc-status": "5",
              "grpc-message": encodeURI("no such group: ü 100%"),
              [STATUS_DETAILS_KEY]: details.toString("base64"),
            },
            { endStream: true },
          );
        case "ok-after-messages":
          stream.respond(grpcHeaders, { waitForTrailers: true });
          stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          return stream.end(Buffer.concat([delivery("a"), delivery("b")]));
      }
    });
    const expected: Record<string, { ids: string[]; code?: Code }> = {
      cancel: { ids: [], code: Code.Canceled },
      refused: { ids: [], code: Code.Unavailable },
      "http-503": { ids: [], code: Code.Unavailable },
      "no-status": { ids: ["a"], code: Code.Internal },
      "trailers-only": { ids: [], code: Code.NotFound },
      "ok-after-messages": { ids: ["a", "b"] },
    };
    for (const [scenario, want] of Object.entries(expected)) {
      const { h2, grpcJs } = both(target, { "x-scenario": scenario });
      const viaH2 = await drain(h2);
      const viaGrpcJs = await drain(grpcJs);
      expect({ scenario, ids: viaH2.ids, code: viaH2.error?.code }).toEqual({ scenario, ...want });
      expect({ scenario, ids: viaH2.ids, error: viaH2.error && visible(viaH2.error) }).toEqual({
        scenario,
        ids: viaGrpcJs.ids,
        error: viaGrpcJs.error && visible(viaGrpcJs.error),
      });
    }
  });

  test("fails UNAVAILABLE when nothing listens or the connection drops", async () => {
    const nobody = await drain(h2Call(`127.0.0.1:${await closedPort()}`));
    expect(nobody.error).toMatchObject({ code: Code.Unavailable, reason: "UNAVAILABLE" });

    const { target, sessions } = await rawServer((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.write(delivery("a"));
    });
    const call = h2Call(target);
    const reading = drain(call);
    await expect.poll(() => sessions.length).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    sessions[0]!.destroy();
    const dropped = await reading;
    expect(dropped.ids).toEqual(["a"]);
    expect(dropped.error).toMatchObject({ code: Code.Unavailable, reason: "UNAVAILABLE" });
  });

  test("a call after a session closed opens a new one", async () => {
    const { target, sessions } = await rawServer((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(delivery("a"));
    });
    const connector = createH2Connector(target);
    onTestFinished(() => connector.close());
    const open = () => openH2Bidi(connector, { path: CONNECT, metadata: {}, encode, decode });
    expect(await drain(open())).toEqual({ ids: ["a"] });
    await new Promise<void>((resolve) => sessions[0]!.close(resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await drain(open())).toEqual({ ids: ["a"] });
    expect(sessions).toHaveLength(2);
  });
});
