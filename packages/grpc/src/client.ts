// Typed grpc-js clients for protobuf-es services; every failure comes back as an AppError.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type {
  DescMessage,
  DescMethod,
  DescService,
  Message,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AppError, Code, isAppError } from "@switchboard/errors";
import { drainGate, methodPath } from "./service-adapter.js";
import { errorFromServiceError, isServiceError } from "./status.js";
import type { BidiStream, ClientCallOptions, ServiceClient } from "./types.js";

/**
 * A hand-written request encoder and/or response decoder for one method, used instead of
 * protobuf-es reflection (see {@link ClientOptions.codecs}).
 */
export interface MethodCodec<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  /**
   * Encodes a request. Must write what `toBinary(I, create(I, init))` writes (or bytes that decode
   * to the same message) and throw where that throws: the call's `send` then rejects with it.
   */
  encode?: (init: MessageInitShape<I>) => Uint8Array;
  /**
   * Decodes a response. Must return exactly what `fromBinary(O, bytes)` returns and throw where it
   * throws (grpc-js then fails the call INTERNAL, as for any response that does not decode).
   */
  decode?: (bytes: Uint8Array) => MessageShape<O>;
}

/** Per-method codecs of a client, keyed by method localName (`connect` for `Connect`). */
export type ClientCodecs<S extends DescService> = {
  [K in keyof S["method"]]?: MethodCodec<S["method"][K]["input"], S["method"][K]["output"]>;
};

/** Options of {@link createClient}. */
export interface ClientOptions<S extends DescService = DescService> {
  /** Channel credentials when the client creates its channel (default: insecure). */
  credentials?: grpc.ChannelCredentials;
  /** Metadata added to every call, evaluated per call (e.g. a current `authorization` value). */
  metadata?: () => Record<string, string> | grpc.Metadata;
  /** Deadline for unary and client-streaming calls without their own `deadlineMs`. Streams get none. */
  defaultDeadlineMs?: number;
  /** grpc-js channel options when the client creates its channel. */
  channelOptions?: grpc.ChannelOptions;
  /**
   * Hand-written codecs for hot methods, by method localName: `encode` replaces
   * `toBinary(create(...))` for every request of the method and `decode` replaces `fromBinary` for
   * every response, in unary, streaming and bidi calls alike. Methods without one (or without
   * `encode` or `decode`) keep protobuf-es. Each must match protobuf-es exactly (see
   * {@link MethodCodec}); a key that is not a method of the service throws at creation.
   */
  codecs?: ClientCodecs<S>;
}

/**
 * Where a client sends calls: a target string (`host:port`, `dns:///host:port`; the client owns
 * the channel and closes it), or an existing `grpc.Channel` or `grpc.Client` whose channel is
 * shared (its owner closes it).
 */
export type ClientTarget = string | grpc.Client | grpc.ChannelInterface;

const identity = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * Creates a typed client for a protobuf-es service: one function per method, keyed by localName.
 * Unary calls return a Promise, server-streaming calls an AsyncIterable, bidi calls a
 * {@link BidiStream}. Every failed call rejects with an AppError carrying the server's code,
 * reason and metadata (see {@link errorFromServiceError}).
 */
export function createClient<S extends DescService>(
  service: S,
  target: ClientTarget,
  opts: ClientOptions<S> = {},
): ServiceClient<S> {
  const codecs: Partial<Record<string, MethodCodec>> = opts.codecs ?? {};
  for (const key of Object.keys(codecs)) {
    if (!(key in service.method)) {
      throw new Error(`${service.typeName} has no method "${key}" (codecs are keyed by localName)`);
    }
  }
  const owned = typeof target === "string";
  const client = owned
    ? new grpc.Client(
        target,
        opts.credentials ?? grpc.credentials.createInsecure(),
        opts.channelOptions ?? {},
      )
    : new grpc.Client("unused", grpc.credentials.createInsecure(), {
        channelOverride: target instanceof grpc.Client ? target.getChannel() : target,
      });
  const methods: Record<string, unknown> = {
    close() {
      if (owned) client.close();
    },
  };
  for (const method of service.methods) {
    if (method.localName === "close") {
      throw new Error(`${service.typeName}.${method.name} clashes with the client's close()`);
    }
    methods[method.localName] = clientMethod(client, method, opts, codecs[method.localName]);
  }
  return methods as ServiceClient<S>;
}

function clientMethod(
  client: grpc.Client,
  method: DescMethod,
  opts: ClientOptions,
  codec: MethodCodec | undefined,
): unknown {
  const path = methodPath(method);
  const decode = codec?.decode ?? ((bytes: Buffer): Message => fromBinary(method.output, bytes));
  const encode =
    (codec?.encode as ((init: unknown) => Uint8Array) | undefined) ??
    ((init: unknown) => encodeWithReflection(method.input, init));
  switch (method.methodKind) {
    case "unary":
      return (request: unknown, callOpts: ClientCallOptions = {}) =>
        new Promise<Message>((resolve, reject) => {
          const bytes = encode(request);
          if (callOpts.signal?.aborted) return reject(cancelledBeforeStart());
          const call = client.makeUnaryRequest(
            path,
            identity,
            decode,
            bytes,
            callMetadata(opts, callOpts),
            callOptions(callOpts, opts.defaultDeadlineMs),
            (err, response) => {
              detach();
              if (err) reject(asAppError(err));
              else if (response === undefined)
                reject(new AppError(Code.Internal, "INTERNAL", "empty response"));
              else resolve(response);
            },
          );
          const detach = cancelOnAbort(callOpts.signal, call);
        });
    case "client_streaming":
      return (requests: AsyncIterable<unknown> | Iterable<unknown>, callOpts: ClientCallOptions = {}) =>
        new Promise<Message>((resolve, reject) => {
          if (callOpts.signal?.aborted) return reject(cancelledBeforeStart());
          let failure: AppError | undefined;
          const call = client.makeClientStreamRequest(
            path,
            identity,
            decode,
            callMetadata(opts, callOpts),
            callOptions(callOpts, opts.defaultDeadlineMs),
            (err, response) => {
              detach();
              if (err) {
                failure = asAppError(err);
                reject(failure);
              } else if (response === undefined)
                reject(new AppError(Code.Internal, "INTERNAL", "empty response"));
              else resolve(response);
            },
          );
          const detach = cancelOnAbort(callOpts.signal, call);
          const drained = drainGate(call, callOpts.signal, () => failure ?? streamClosed());
          void (async () => {
            for await (const request of requests) {
              if (failure !== undefined) return;
              if (!call.write(encode(request))) {
                await drained();
              }
            }
            call.end();
          })().catch((err: unknown) => {
            // The call's own outcome (callback) wins; a failing request source cancels it.
            if (failure === undefined) {
              call.cancel();
              reject(asAppError(err));
            }
          });
        });
    case "server_streaming":
      return (request: unknown, callOpts: ClientCallOptions = {}) =>
        (async function* () {
          const bytes = encode(request);
          if (callOpts.signal?.aborted) throw cancelledBeforeStart();
          const call = client.makeServerStreamRequest(
            path,
            identity,
            decode,
            bytes,
            callMetadata(opts, callOpts),
            callOptions(callOpts),
          );
          yield* readResponses(call, cancelOnAbort(callOpts.signal, call));
        })();
    case "bidi_streaming":
      return (callOpts: ClientCallOptions = {}) => bidiStream(client, path, encode, decode, opts, callOpts);
  }
}

function bidiStream(
  client: grpc.Client,
  path: string,
  encode: (init: unknown) => Uint8Array,
  decode: (bytes: Buffer) => Message,
  opts: ClientOptions,
  callOpts: ClientCallOptions,
): BidiStream<DescMessage, DescMessage> {
  if (callOpts.signal?.aborted) throw cancelledBeforeStart();
  const call = client.makeBidiStreamRequest(
    path,
    identity,
    decode,
    callMetadata(opts, callOpts),
    callOptions(callOpts),
  );
  let failure: AppError | undefined;
  let closed = false;
  const detach = cancelOnAbort(callOpts.signal, call);
  // grpc-js emits 'error' for a failed status; without a listener that would crash the process.
  call.on("error", (err) => {
    failure ??= asAppError(err);
  });
  call.on("status", () => {
    closed = true;
    detach();
  });
  const closedError = () => failure ?? streamClosed();
  const drained = drainGate(call, undefined, closedError);
  return {
    async send(message) {
      if (failure !== undefined || closed || call.writableEnded) throw closedError();
      if (!call.write(encode(message))) await drained();
    },
    end() {
      if (!call.writableEnded) call.end();
    },
    cancel() {
      call.cancel();
    },
    responses: readResponses(call, detach),
  };
}

/** Iterates a call's responses as AppError-failing messages; leaving the loop early cancels the call. */
async function* readResponses(
  call: grpc.ClientReadableStream<Message> | grpc.ClientDuplexStream<Uint8Array, Message>,
  detach: () => void,
): AsyncGenerator<Message> {
  call.on("error", () => {
    // Surfaced through the iterator below.
  });
  try {
    for await (const message of call) yield message as Message;
  } catch (err) {
    throw asAppError(err);
  } finally {
    detach();
    call.cancel();
  }
}

function encodeWithReflection(schema: DescMessage, init: unknown): Uint8Array {
  return toBinary(schema, create(schema, init as MessageInitShape<DescMessage>));
}

function asAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (isServiceError(err)) return errorFromServiceError(err);
  return new AppError(Code.Unknown, "UNKNOWN", err instanceof Error ? err.message : String(err), {
    cause: err,
  });
}

function streamClosed(): AppError {
  return new AppError(Code.FailedPrecondition, "STREAM_CLOSED", "stream already closed");
}

function cancelledBeforeStart(): AppError {
  return new AppError(Code.Canceled, "CANCELLED", "call cancelled before it started");
}

function cancelOnAbort(signal: AbortSignal | undefined, call: { cancel(): void }): () => void {
  if (signal === undefined) return () => {};
  const onAbort = () => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

function callOptions(callOpts: ClientCallOptions, defaultDeadlineMs?: number): grpc.CallOptions {
  const ms = callOpts.deadlineMs ?? defaultDeadlineMs;
  return ms === undefined ? {} : { deadline: new Date(Date.now() + ms) };
}

function callMetadata(opts: ClientOptions, callOpts: ClientCallOptions): grpc.Metadata {
  const md = new grpc.Metadata();
  const add = (src: Record<string, string> | grpc.Metadata | undefined) => {
    if (src === undefined) return;
    if (src instanceof grpc.Metadata) {
      // Later sources replace a key's values rather than adding to them.
      for (const key of Object.keys(src.getMap())) {
        md.remove(key);
        for (const value of src.get(key)) md.add(key, value);
      }
    } else {
      for (const [key, value] of Object.entries(src)) md.set(key, value);
    }
  };
  add(opts.metadata?.());
  add(callOpts.metadata);
  return md;
}
