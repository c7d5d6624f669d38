// Handler and client types derived from protobuf-es v2 service descriptors (GenService).
import type {
  DescMessage,
  DescMethod,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";

/** Per-call context handed to every server handler. */
export interface CallContext {
  /** The method, `package.Service/Method` (e.g. `switchboard.delivery.v1.DirectoryService/GetAccount`). */
  readonly rpc: string;
  /** The request id: the client's `x-request-id` metadata if it sent a sane one, else generated. */
  readonly requestId: string;
  /** The request metadata (headers), e.g. `authorization`. */
  readonly metadata: grpc.Metadata;
  /**
   * Aborted when the client cancels, the deadline passes or the server shuts down; `reason` is an
   * AppError (CANCELLED, DEADLINE_EXCEEDED or UNAVAILABLE `SHUTTING_DOWN`) that may be rethrown.
   */
  readonly signal: AbortSignal;
  /** The client's deadline, if it set one. */
  readonly deadline?: Date;
  /** A child logger carrying `rpc` and `requestId`. */
  readonly log: Logger;
  /** The client's address, `host:port` (or `unknown`). */
  readonly peer: string;
}

/**
 * The response side of a server-streaming or bidi call. `send` resolves once the message is
 * handed to the transport within its flow-control window: it waits for `drain` when the stream's
 * buffer is full, so awaiting each send applies the client's backpressure. After the call is
 * aborted (see {@link CallContext.signal}) it rejects with the abort reason.
 */
export interface StreamSender<O extends DescMessage> {
  send(message: MessageInitShape<O> | Encoded<O>): Promise<void>;
}

/**
 * A response already in wire form, written as is. For hot paths that hold the exact bytes of the
 * response (e.g. an event whose wire format matches it field for field); the caller vouches that
 * `bytes` decode as `O`.
 */
export class Encoded<O extends DescMessage> {
  declare private readonly schema?: O;
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Handler of a unary RPC: returns the response (a message or its init shape, or the response
 * already in wire form as {@link Encoded}).
 */
export type UnaryImpl<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => Promise<MessageInitShape<O> | Encoded<O>>;

/** Handler of a server-streaming RPC: sends responses through `out`; returning ends the call OK. */
export type ServerStreamingImpl<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
  out: StreamSender<O>,
) => Promise<void>;

/** Handler of a client-streaming RPC: reads all requests, returns the one response. */
export type ClientStreamingImpl<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  ctx: CallContext,
) => Promise<MessageInitShape<O> | Encoded<O>>;

/**
 * Handler of a bidi-streaming RPC. `requests` ends when the client half-closes; a malformed
 * request makes it throw INVALID_ARGUMENT. Returning ends the call OK.
 */
export type BidiStreamingImpl<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  ctx: CallContext,
  out: StreamSender<O>,
) => Promise<void>;

/**
 * The handler type of one method descriptor, chosen by its `methodKind`. Needs a generated
 * (`GenService`) descriptor: for an untyped `DescMethod` it is `never`.
 */
export type MethodImpl<M extends DescMethod> = M extends { methodKind: "unary" }
  ? UnaryImpl<M["input"], M["output"]>
  : M extends { methodKind: "server_streaming" }
    ? ServerStreamingImpl<M["input"], M["output"]>
    : M extends { methodKind: "client_streaming" }
      ? ClientStreamingImpl<M["input"], M["output"]>
      : M extends { methodKind: "bidi_streaming" }
        ? BidiStreamingImpl<M["input"], M["output"]>
        : never;

/**
 * A full implementation of a service: one handler per method, keyed by the method's `localName`
 * (`resolveHandle` for `ResolveHandle`). Annotate implementations with it to have the compiler
 * flag missing methods; `GrpcServer.add` also accepts a partial one.
 */
export type ServiceImpl<S extends DescService> = {
  [K in keyof S["method"]]: MethodImpl<S["method"][K]>;
};

/** Per-call client options. */
export interface ClientCallOptions {
  /** Deadline in milliseconds from now; overrides the client's `defaultDeadlineMs`. */
  deadlineMs?: number;
  /** Cancels the call when aborted (the call then fails CANCELLED). */
  signal?: AbortSignal;
  /** Extra request metadata, merged over the client's `metadata()`. */
  metadata?: Record<string, string> | grpc.Metadata;
}

/**
 * The client side of a bidi-streaming call. The call starts when the method is invoked.
 * Failures surface as AppError from `responses` and from `send`.
 */
export interface BidiStream<I extends DescMessage, O extends DescMessage> {
  /**
   * Sends one request. Resolves at once while the stream's buffer has room, else when it drains
   * (backpressure). Rejects with the call's AppError once it failed, or `STREAM_CLOSED`
   * (FAILED_PRECONDITION) after `end`, `cancel` or the server's final status.
   */
  send(message: MessageInitShape<I>): Promise<void>;
  /** Half-closes the request side; responses keep flowing until the server ends the call. */
  end(): void;
  /** Cancels the call: `responses` fails CANCELLED and the server's signal aborts. */
  cancel(): void;
  /** The responses, iterable once. Breaking out of the loop cancels the call. */
  readonly responses: AsyncIterable<MessageShape<O>>;
}

/** What a {@link BidiOpener} gets to start a call with. */
export interface BidiCallSpec<I extends DescMessage, O extends DescMessage> {
  /** `/package.Service/Method`. */
  path: string;
  /** The call's metadata, lower-case ASCII header names (e.g. `authorization`). */
  metadata: Record<string, string>;
  /** Encodes a request (throws where `toBinary(create(...))` throws). */
  encode: (message: MessageInitShape<I>) => Uint8Array;
  /** Decodes a response (throws for bytes that are not one). */
  decode: (bytes: Uint8Array) => MessageShape<O>;
}

/**
 * Starts a bidi call on an HTTP/2 client other than grpc-js (e.g. a lean one of the caller's). The
 * stream it returns must keep the {@link BidiStream} contract and fail with the AppError a
 * `createClient` call would give for the same ending.
 */
export type BidiOpener = <I extends DescMessage, O extends DescMessage>(
  call: BidiCallSpec<I, O>,
) => BidiStream<I, O>;

/** Client function of a unary RPC. */
export type UnaryCall<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: ClientCallOptions,
) => Promise<MessageShape<O>>;

/**
 * Client function of a server-streaming RPC. The call starts on the first iteration (iterable
 * once); breaking out of the loop or aborting `signal` cancels it.
 */
export type ServerStreamingCall<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: ClientCallOptions,
) => AsyncIterable<MessageShape<O>>;

/** Client function of a client-streaming RPC: sends every request, then awaits the response. */
export type ClientStreamingCall<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageInitShape<I>> | Iterable<MessageInitShape<I>>,
  options?: ClientCallOptions,
) => Promise<MessageShape<O>>;

/** Client function of a bidi-streaming RPC: starts the call at once (throws CANCELLED if `signal` already aborted). */
export type BidiStreamingCall<I extends DescMessage, O extends DescMessage> = (
  options?: ClientCallOptions,
) => BidiStream<I, O>;

/** The client function type of one method descriptor, chosen by its `methodKind` (`never` if untyped). */
export type ClientMethod<M extends DescMethod> = M extends { methodKind: "unary" }
  ? UnaryCall<M["input"], M["output"]>
  : M extends { methodKind: "server_streaming" }
    ? ServerStreamingCall<M["input"], M["output"]>
    : M extends { methodKind: "client_streaming" }
      ? ClientStreamingCall<M["input"], M["output"]>
      : M extends { methodKind: "bidi_streaming" }
        ? BidiStreamingCall<M["input"], M["output"]>
        : never;

/**
 * A typed client: one function per method keyed by `localName`, plus `close()`. Every failure
 * is an AppError (see `errorFromServiceError`).
 */
export type ServiceClient<S extends DescService> = {
  readonly [K in keyof S["method"]]: ClientMethod<S["method"][K]>;
} & {
  /** Closes the channel if this client created it; a shared channel is left to its owner. */
  close(): void;
};
