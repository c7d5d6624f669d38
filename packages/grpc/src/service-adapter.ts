// Adapts protobuf-es service descriptors and typed handlers to grpc-js: one ServiceDefinition
// per service, and one wrapper per handler that builds the CallContext, maps every outcome to a
// status with the one error mapping, and logs one line per finished call.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Readable, Writable } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, DescService, Message, MessageInitShape } from "@bufbuild/protobuf";
import { Metadata, status as grpcStatus } from "@grpc/grpc-js";
import type * as grpc from "@grpc/grpc-js";
import { AppError, Code, isAppError } from "@switchboard/errors";
import type { Logger } from "pino";
import { appErrorToStatus, statusName } from "./status.js";
import { Encoded, type CallContext, type StreamSender } from "./types.js";

/** What a finished call reports to `onCallEnd`. */
export interface CallEndEvent {
  /** `package.Service/Method`. */
  rpc: string;
  /** The gRPC status code the call ended with (0 = OK). */
  code: number;
  /** Wall time from the call's arrival until its handler settled. */
  durationMs: number;
}

/** A running adapted call, as tracked by the server for shutdown. */
export interface ActiveCall {
  readonly streaming: boolean;
  abort(reason: AppError): void;
}

/** Server-wide state the adapter needs. */
export interface AdapterRuntime {
  readonly log: Logger;
  readonly onCallEnd: ((e: CallEndEvent) => void) | undefined;
  /** Turns known non-AppErrors (e.g. a database outage) into AppErrors before the INTERNAL fallback. */
  readonly translateError: ((err: unknown) => AppError | undefined) | undefined;
  readonly active: Set<ActiveCall>;
}

/** A request whose bytes did not decode; the handler wrapper turns it into INVALID_ARGUMENT. */
class MalformedRequest {
  constructor(readonly cause: unknown) {}
}

type Decoded = Message | MalformedRequest;
type AnyImpl = (...args: never[]) => Promise<unknown>;

const REQUEST_ID_KEY = "x-request-id";
const REQUEST_ID_PATTERN = /^[\w.:/+=-]{1,128}$/;
const HEALTH_PREFIX = "grpc.health.v1.Health/";
// Timers may fire a little early; a cancel this close to the deadline is the deadline.
const DEADLINE_SLACK_MS = 10;

/**
 * Builds the grpc-js definition and implementation of one service. Methods missing from `impl`
 * answer UNIMPLEMENTED through the same wrapper (so they are logged like any other call).
 */
export function adaptService(
  service: DescService,
  impl: Partial<Record<string, unknown>>,
  rt: AdapterRuntime,
  decoders: Partial<Record<string, (bytes: Uint8Array) => Message>> = {},
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  for (const key of [...Object.keys(impl), ...Object.keys(decoders)]) {
    if (!(key in service.method)) {
      throw new Error(`${service.typeName} has no method "${key}" (handlers are keyed by localName)`);
    }
  }
  const definition: Record<string, grpc.MethodDefinition<Decoded, Uint8Array>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const requestStream = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const responseStream = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
    definition[method.name] = {
      path: methodPath(method),
      requestStream,
      responseStream,
      originalName: method.localName,
      // Only the server half is used. Decoding never throws (grpc-js would answer INTERNAL), and
      // handlers encode responses themselves, so both failures reach the one error mapping.
      requestSerialize: (msg: Decoded) => toBuffer(encode(method.input, msg)),
      requestDeserialize: (bytes: Buffer) => decodeRequest(method.input, bytes, decoders[method.localName]),
      responseSerialize: toBuffer,
      responseDeserialize: (bytes: Buffer) => new Uint8Array(bytes),
    };
    const fn = impl[method.localName];
    const handler = typeof fn === "function" ? (fn.bind(impl) as AnyImpl) : unimplemented(method);
    implementation[method.name] = adaptHandler(method, handler, rt);
  }
  return { definition, implementation };
}

/** The HTTP/2 path of a method: `/package.Service/Method`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Records a finished call: `onCallEnd` and one "rpc finished" line at the code's level. */
export function reportCallEnd(
  rt: AdapterRuntime,
  log: Logger | (() => Logger),
  rpc: string,
  code: number,
  startMs: number,
  extra: { reason?: string; err?: unknown } = {},
): void {
  const durationMs = Math.round((performance.now() - startMs) * 10) / 10;
  try {
    rt.onCallEnd?.({ rpc, code, durationMs });
  } catch (err) {
    // A metrics callback must not break request handling.
    (typeof log === "function" ? log() : log).warn({ err }, "onCallEnd failed");
  }
  let level: "debug" | "info" | "warn" | "error" = levelFor(code);
  if (level === "info" && rpc.startsWith(HEALTH_PREFIX)) level = "debug";
  // A call's child logger is only built when the line is written (at LOG_LEVEL=warn a successful
  // call builds none: one pino child per call was ~1.5 % of the delivery service's CPU on unary sends).
  if (!rt.log.isLevelEnabled(level)) return;
  const fields: Record<string, unknown> = { code: statusName(code), durationMs };
  if (extra.reason !== undefined) fields.reason = extra.reason;
  if (extra.err !== undefined && (level === "warn" || level === "error")) fields.err = extra.err;
  (typeof log === "function" ? log() : log)[level](fields, "rpc finished");
}

/** Whether a cancelled call was in fact cut off by its deadline. */
export function isPastDeadline(deadline: grpc.Deadline): boolean {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) && Date.now() >= ms - DEADLINE_SLACK_MS;
}

function levelFor(code: number): "info" | "warn" | "error" {
  switch (code as Code) {
    case Code.Internal:
    case Code.Unknown:
    case Code.DataLoss:
      return "error";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
      return "warn";
    default:
      return "info";
  }
}

function unimplemented(method: DescMethod): AnyImpl {
  return async () => {
    throw new AppError(
      Code.Unimplemented,
      "UNIMPLEMENTED",
      `${method.parent.typeName}/${method.name} is not implemented`,
    );
  };
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodeRequest(
  schema: DescMessage,
  bytes: Buffer,
  decoder: ((bytes: Uint8Array) => Message) | undefined,
): Decoded {
  try {
    // A plain Uint8Array view, so `bytes` fields are Uint8Array rather than Buffer.
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return decoder ? decoder(view) : fromBinary(schema, view);
  } catch (err) {
    return new MalformedRequest(err);
  }
}

function requestOf(method: DescMethod, decoded: Decoded): Message {
  if (decoded instanceof MalformedRequest) {
    throw new AppError(
      Code.InvalidArgument,
      "MALFORMED_REQUEST",
      `request is not a valid ${method.input.typeName}`,
      { cause: decoded.cause },
    );
  }
  return decoded;
}

function encode(schema: DescMessage, init: unknown): Uint8Array {
  if (init instanceof Encoded) return init.bytes;
  return toBinary(schema, create(schema, init as MessageInitShape<DescMessage>));
}

interface SurfaceCall {
  readonly metadata: grpc.Metadata;
  getPeer(): string;
  getDeadline(): grpc.Deadline;
  on(event: "cancelled", listener: () => void): unknown;
}

/**
 * A call's context. What a handler may never look at is made on first use: the child logger (a
 * pino child costs ~0.5 KiB, which long-lived idle streams, one per connected device, would
 * otherwise each keep for nothing), the generated request id and the abort signal (on a unary
 * send, a random UUID and an AbortController with its EventTarget were most of the adapter's own
 * allocation per call).
 */
class Context implements CallContext {
  #log: Logger | undefined;
  #requestId: string | undefined;
  readonly deadline?: Date;

  constructor(
    private readonly parentLog: Logger,
    readonly rpc: string,
    sentRequestId: string | undefined,
    readonly metadata: grpc.Metadata,
    private readonly state: CallState,
    deadline: Date | undefined,
    readonly peer: string,
  ) {
    this.#requestId = sentRequestId;
    if (deadline !== undefined) this.deadline = deadline;
  }

  get requestId(): string {
    return (this.#requestId ??= randomUUID());
  }

  get signal(): AbortSignal {
    return this.state.signal;
  }

  get log(): Logger {
    return (this.#log ??= this.parentLog.child({ rpc: this.rpc, requestId: this.requestId }));
  }
}

/** Per-call lifecycle: context, abort handling, the outcome mapping and the final log line. */
class CallState implements ActiveCall {
  readonly ctx: CallContext;
  /** Made when the handler first reads its signal, or when the call is aborted. */
  #controller: AbortController | undefined;
  readonly #startMs = performance.now();
  /** Set once grpc-js reports the call cancelled: no status can be sent any more. */
  cancelled = false;
  #finished = false;

  constructor(
    private readonly rt: AdapterRuntime,
    call: SurfaceCall,
    readonly rpc: string,
    readonly streaming: boolean,
  ) {
    const metadata = call.metadata;
    const sent = metadata.get(REQUEST_ID_KEY)[0];
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    this.ctx = new Context(
      rt.log,
      rpc,
      typeof sent === "string" && REQUEST_ID_PATTERN.test(sent) ? sent : undefined,
      metadata,
      this,
      Number.isFinite(deadlineMs) ? new Date(deadlineMs) : undefined,
      call.getPeer(),
    );
    call.on("cancelled", () => {
      // grpc-js also reports 'cancelled' after every status it sends; only a real cancel counts.
      if (this.#finished) return;
      this.cancelled = true;
      this.abort(
        isPastDeadline(deadline)
          ? new AppError(Code.DeadlineExceeded, "DEADLINE_EXCEEDED", "deadline exceeded")
          : new AppError(Code.Canceled, "CANCELLED", "call cancelled by the client"),
      );
    });
    rt.active.add(this);
  }

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  abort(reason: AppError): void {
    const controller = (this.#controller ??= new AbortController());
    if (!controller.signal.aborted) controller.abort(reason);
  }

  /**
   * Ends the call's bookkeeping and returns the status to send for a failure (`undefined` on
   * success). The one error mapping: an aborted call ends with the abort's code (CANCELLED,
   * DEADLINE_EXCEEDED, or UNAVAILABLE on shutdown), an AppError with its own code and details,
   * anything else INTERNAL "internal error" with the error logged, never sent.
   */
  finish(err: unknown, failed: boolean): grpc.StatusObject | undefined {
    this.#finished = true;
    this.rt.active.delete(this);
    const signal = this.#controller?.signal;
    const log = () => this.ctx.log;
    // Once cancelled (client, deadline) the outcome is the abort; on shutdown the status can still
    // be sent, so a handler's own AppError wins over the generic abort reason.
    if (signal?.aborted && (this.cancelled || (failed && !isAppError(err)))) {
      const reason = signal.reason as AppError;
      reportCallEnd(this.rt, log, this.rpc, reason.code, this.#startMs, { reason: reason.reason });
      return appErrorToStatus(reason);
    }
    if (!failed) {
      reportCallEnd(this.rt, log, this.rpc, 0, this.#startMs);
      return undefined;
    }
    let appErr: AppError;
    if (isAppError(err)) {
      appErr = err;
    } else if (err instanceof Error && err.name === "AbortError") {
      appErr = new AppError(Code.Canceled, "CANCELLED", "operation aborted", { cause: err });
    } else if (this.rt.translateError?.(err)) {
      appErr = this.rt.translateError(err) as AppError;
    } else {
      appErr = new AppError(Code.Internal, "INTERNAL", "internal error", { cause: err });
    }
    reportCallEnd(this.rt, log, this.rpc, appErr.code, this.#startMs, { reason: appErr.reason, err });
    return appErrorToStatus(appErr);
  }
}

function settle(
  run: () => Promise<unknown>,
  state: CallState,
): Promise<{ value?: unknown; status?: grpc.StatusObject }> {
  return run()
    .then(
      (value) => ({ value, ...withStatus(state.finish(undefined, false)) }),
      (err: unknown) => withStatus(state.finish(err, true)),
    )
    .catch((err: unknown) => {
      // Rendering the status failed (e.g. AppError metadata that is not string-valued): still
      // answer, rather than leave the call hanging or reject with no one listening.
      state.ctx.log.error({ err }, "rendering the call's status failed");
      return {
        status: { code: grpcStatus.INTERNAL, details: "internal error", metadata: new Metadata() },
      };
    });
}

function withStatus(status: grpc.StatusObject | undefined): { status?: grpc.StatusObject } {
  return status === undefined ? {} : { status };
}

function adaptHandler(method: DescMethod, fn: AnyImpl, rt: AdapterRuntime): grpc.UntypedHandleCall {
  const rpc = `${method.parent.typeName}/${method.name}`;
  const impl = fn as (...args: unknown[]) => Promise<unknown>;
  switch (method.methodKind) {
    case "unary":
      return (call: grpc.ServerUnaryCall<Decoded, Uint8Array>, callback: grpc.sendUnaryData<Uint8Array>) => {
        const state = new CallState(rt, call, rpc, false);
        void settle(
          async () => encode(method.output, await impl(requestOf(method, call.request), state.ctx)),
          state,
        ).then(({ value, status }) => {
          if (status !== undefined) callback(status);
          else callback(null, value as Uint8Array);
        });
      };
    case "client_streaming":
      return (
        call: grpc.ServerReadableStream<Decoded, Uint8Array>,
        callback: grpc.sendUnaryData<Uint8Array>,
      ) => {
        const state = new CallState(rt, call, rpc, true);
        const requests = readRequests(call, method, state.ctx.signal);
        void settle(async () => encode(method.output, await impl(requests, state.ctx)), state).then(
          ({ value, status }) => {
            if (status !== undefined) callback(status);
            else callback(null, value as Uint8Array);
          },
        );
      };
    case "server_streaming":
      return (call: grpc.ServerWritableStream<Decoded, Uint8Array>) => {
        const state = new CallState(rt, call, rpc, true);
        const out = createSender(call, method.output, state.ctx.signal);
        void settle(() => impl(requestOf(method, call.request), state.ctx, out), state).then(({ status }) =>
          endStream(call, state, status),
        );
      };
    case "bidi_streaming":
      return (call: grpc.ServerDuplexStream<Decoded, Uint8Array>) => {
        const state = new CallState(rt, call, rpc, true);
        const requests = readRequests(call, method, state.ctx.signal);
        const out = createSender(call, method.output, state.ctx.signal);
        void settle(() => impl(requests, state.ctx, out), state).then(({ status }) =>
          endStream(call, state, status),
        );
      };
  }
}

function endStream(call: Writable, state: CallState, status: grpc.StatusObject | undefined): void {
  // A cancelled call is already destroyed; writing its end would only raise stream errors.
  if (state.cancelled || call.destroyed) return;
  if (status === undefined) call.end();
  // grpc-js turns an 'error' event on a server stream into the call's final status.
  else call.emit("error", status);
}

async function* readRequests(
  stream: Readable,
  method: DescMethod,
  signal: AbortSignal,
): AsyncGenerator<Message> {
  try {
    // destroyOnReturn: false keeps the response side usable after the handler stops reading.
    for await (const item of stream.iterator({ destroyOnReturn: false })) {
      yield requestOf(method, item as Decoded);
    }
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw err;
  }
}

function createSender(stream: Writable, schema: DescMessage, signal: AbortSignal): StreamSender<DescMessage> {
  const drained = drainGate(stream, signal);
  return {
    async send(message) {
      if (signal.aborted) throw signal.reason;
      if (stream.write(encode(schema, message))) return;
      await drained();
    },
  };
}

/**
 * Returns a function awaiting the stream's next 'drain' (see {@link waitForDrain}); concurrent
 * callers share one wait, so unawaited sends do not pile up listeners.
 */
export function drainGate(
  stream: Writable,
  signal?: AbortSignal,
  closedError?: () => Error,
): () => Promise<void> {
  let pending: Promise<void> | undefined;
  return () =>
    (pending ??= waitForDrain(stream, signal, closedError).finally(() => {
      pending = undefined;
    }));
}

/**
 * Resolves on the stream's next 'drain'; rejects when `signal` aborts or the stream closes
 * ('close', or 'status' for grpc-js client calls, which end without closing).
 */
export function waitForDrain(
  stream: Writable,
  signal: AbortSignal | undefined,
  closedError?: () => Error,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      stream.off("status", onClose);
      signal?.removeEventListener("abort", onAbort);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onAbort = () => {
      cleanup();
      reject(asError(signal?.reason));
    };
    const onClose = () => {
      cleanup();
      reject(
        signal?.aborted
          ? asError(signal.reason)
          : (closedError?.() ?? new AppError(Code.Canceled, "CANCELLED", "stream closed")),
      );
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    stream.once("drain", onDrain);
    stream.once("close", onClose);
    stream.once("status", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
