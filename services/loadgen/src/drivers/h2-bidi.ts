// A lean gRPC bidi-streaming call over node:http2, for the WhatsApp-style devices' Chat streams
// (the SDK's `openChat` option). grpc-js's client spends about a third of the load generator's CPU
// on that path (its resolving, retrying, load-balancing and subchannel call layers, interceptors
// and object-mode streams, for every message each way); this writes each request as one gRPC
// message on the call's HTTP/2 stream and reads responses and the status itself. It behaves as
// `createClient`'s bidi calls do (the BidiStream contract, and the AppError grpc-js would give for
// each ending: h2-grpc.ts).
import http2 from "node:http2";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import type { BidiCallSpec, BidiOpener, BidiStream } from "@switchboard/grpc";
import {
  decodeMessage,
  failure,
  grpcFrame,
  httpStatusOf,
  readMessages,
  requestHeaders,
  startCall,
  statusOf,
  type H2Connector,
} from "./h2-grpc.js";

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = http2.constants;

/** Responses buffered ahead of the reader before the stream stops reading (HTTP/2 flow control then applies). */
const READ_AHEAD = 64;

/** A {@link BidiOpener} whose calls go out on `connector`'s session. */
export function h2BidiOpener(connector: H2Connector): BidiOpener {
  return (call) => openH2Bidi(connector, call);
}

/**
 * Starts a bidi call to `path` on the connector's current session. A session that can no longer
 * start streams gives a call that has failed UNAVAILABLE (its `send` and `responses` reject).
 */
export function openH2Bidi<I extends DescMessage, O extends DescMessage>(
  connector: H2Connector,
  call: BidiCallSpec<I, O>,
): BidiStream<I, O> {
  const started = startCall(connector, requestHeaders(call.path, call.metadata));
  if (!("stream" in started)) return failedStream(started);
  const { stream, ended } = started;
  /** Set once the call has failed (status, reset, undecodable response): what send and the reader get. */
  let failed: AppError | undefined;
  let closed = false;
  let pending: Buffer | undefined;
  const queue: MessageShape<O>[] = [];
  let waiter:
    { resolve: (r: IteratorResult<MessageShape<O>>) => void; reject: (e: unknown) => void } | undefined;

  const settleWaiter = () => {
    const w = waiter;
    if (w === undefined || (queue.length === 0 && !closed)) return;
    waiter = undefined;
    if (queue.length > 0) w.resolve({ value: queue.shift()!, done: false });
    else if (failed !== undefined) w.reject(failed);
    else w.resolve({ value: undefined, done: true });
  };
  /** A local failure: reset the stream; the reader gets `err` after what was already received. */
  const abort = (err: AppError) => {
    failed ??= err;
    stream.close(NGHTTP2_CANCEL);
  };

  stream.on("data", (chunk: Buffer) => {
    if (failed !== undefined) return;
    const body = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    const read = readMessages(body, httpStatusOf(ended.headers));
    if (!("messages" in read)) return abort(read);
    pending = read.rest < body.length ? body.subarray(read.rest) : undefined;
    for (const m of read.messages) {
      const decoded = decodeMessage(m, call.decode);
      if (!("value" in decoded)) return abort(decoded);
      queue.push(decoded.value);
    }
    if (queue.length >= READ_AHEAD) stream.pause();
    settleWaiter();
  });
  // The server ended its side (its status came): the call is over, so close ours too, as grpc-js
  // does ('close' waits for both sides).
  stream.on("end", () => {
    if (!stream.closed) stream.close(NGHTTP2_NO_ERROR);
  });
  stream.on("close", () => {
    closed = true;
    failed ??= statusOf(ended);
    settleWaiter();
  });

  const closedError = () => failed ?? streamClosed();

  const responses: AsyncIterableIterator<MessageShape<O>> = {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      if (queue.length > 0) {
        const value = queue.shift()!;
        if (queue.length < READ_AHEAD / 2 && stream.isPaused()) stream.resume();
        return Promise.resolve({ value, done: false });
      }
      if (closed) {
        return failed === undefined
          ? Promise.resolve({ value: undefined, done: true })
          : Promise.reject(failed);
      }
      if (waiter !== undefined) return Promise.reject(new Error("responses are read one at a time"));
      if (stream.isPaused()) stream.resume();
      return new Promise((resolve, reject) => (waiter = { resolve, reject }));
    },
    return() {
      // Leaving the loop early cancels the call, as with grpc-js.
      if (!closed) abort(failure(Code.Canceled, "Call cancelled"));
      queue.length = 0;
      return Promise.resolve({ value: undefined, done: true });
    },
  };

  return {
    async send(message) {
      if (failed !== undefined || closed || stream.closed || stream.writableEnded) throw closedError();
      const frame = grpcFrame(call.encode(message));
      if (stream.write(frame)) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          stream.off("drain", done);
          stream.off("close", done);
          resolve();
        };
        stream.on("drain", done);
        stream.on("close", done);
      });
      if (closed) throw closedError();
    },
    end() {
      if (!stream.writableEnded && !closed) stream.end();
    },
    cancel() {
      if (!closed) abort(failure(Code.Canceled, "Call cancelled"));
    },
    responses,
  };
}

/** A call that failed before it started. */
function failedStream<I extends DescMessage, O extends DescMessage>(err: AppError): BidiStream<I, O> {
  return {
    send: () => Promise.reject(err),
    end() {},
    cancel() {},
    responses: {
      [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }),
    },
  };
}

function streamClosed(): AppError {
  return new AppError(Code.FailedPrecondition, "STREAM_CLOSED", "stream already closed");
}
