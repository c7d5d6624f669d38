// The gRPC server: protobuf-es services over grpc-js, with health, reflection, one error mapping
// and one log line per call.
import { performance } from "node:perf_hooks";
import { toBinary } from "@bufbuild/protobuf";
import type { DescFile, DescService, Message } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { AppError, Code } from "@switchboard/errors";
import { grpcHealthV1, grpcReflectionV1, grpcReflectionV1alpha } from "@switchboard/proto";
import { HealthImplementation } from "grpc-health-check";
import type { Logger } from "pino";
import { adaptService, isPastDeadline, methodPath, reportCallEnd } from "./service-adapter.js";
import type { ActiveCall, AdapterRuntime, CallEndEvent } from "./service-adapter.js";
import type { ServiceImpl } from "./types.js";

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  /** Parent logger; each call logs through a child with `rpc` and `requestId`. */
  log: Logger;
  /** Largest accepted request message in bytes (default 4 MiB); larger ones fail RESOURCE_EXHAUSTED. */
  maxReceiveMessageBytes?: number;
  /** Called once per finished call (all services, health and reflection included), e.g. for metrics. */
  onCallEnd?: (e: CallEndEvent) => void;
  /**
   * Maps errors that are not AppErrors but have a known meaning (a dependency being down →
   * UNAVAILABLE) before the INTERNAL fallback. Return undefined to leave an error INTERNAL.
   */
  translateError?: (err: unknown) => AppError | undefined;
  /** Transport credentials (default: insecure, for use behind a mesh or on a private network). */
  credentials?: grpc.ServerCredentials;
}

/** A serving status settable through {@link HealthStatus}. */
export type ServingStatus = "SERVING" | "NOT_SERVING";

/** The server's `grpc.health.v1.Health` state. */
export interface HealthStatus {
  /**
   * Sets the status reported for a service name (its fully qualified name, or `""` for the server
   * as a whole); `Watch` streams are notified. Every added service and `""` start as SERVING.
   */
  setStatus(service: string, status: ServingStatus): void;
}

/** Options of {@link GrpcServer.add}. */
export interface AddOptions {
  /**
   * Request decoders to use instead of protobuf-es `fromBinary`, by method localName: for hot
   * methods whose requests a hand-written decoder reads faster. Each must return exactly what
   * `fromBinary(method.input, bytes)` would, and throw where it throws (a throw becomes
   * INVALID_ARGUMENT MALFORMED_REQUEST, as for any request that does not decode).
   */
  decoders?: Partial<Record<string, (bytes: Uint8Array) => Message>>;
}

/** A gRPC server built by {@link createGrpcServer}. */
export interface GrpcServer {
  /**
   * Serves a protobuf-es service. Handlers are keyed by method localName; methods left out answer
   * UNIMPLEMENTED. Also registers the service for reflection and marks it SERVING in health.
   * Throws if called after `listen` or with a handler for a method the service lacks.
   */
  add<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>, options?: AddOptions): void;
  /** Health status per service, served as the standard `grpc.health.v1.Health` (Check, Watch, List). */
  readonly health: HealthStatus;
  /**
   * Starts serving on `host:port` (port 0 picks a free port) and resolves to the bound port.
   * Registers server reflection (v1 and v1alpha) for all added services, health and reflection.
   */
  listen(host: string, port: number): Promise<number>;
  /**
   * Shuts down: marks every health status NOT_SERVING, stops accepting calls, aborts the signal of
   * streaming calls at once (UNAVAILABLE, reason SHUTTING_DOWN) and gives unary calls `graceMs`
   * (default 5000) to finish before aborting the rest and force-closing connections. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024;
const DEFAULT_GRACE_MS = 5000;
const HEALTH_FILES: readonly DescFile[] = [grpcHealthV1.file_grpc_health_v1_health];
const REFLECTION_FILES: readonly DescFile[] = [
  grpcReflectionV1.file_grpc_reflection_v1_reflection,
  grpcReflectionV1alpha.file_grpc_reflection_v1alpha_reflection,
];

/**
 * Creates a gRPC server for protobuf-es services, with the standard health and reflection
 * services. Every handler goes through one error mapping: AppError → its code with
 * `google.rpc.ErrorInfo{reason}` in `grpc-status-details-bin`; an aborted call → CANCELLED;
 * anything else → INTERNAL "internal error" (logged with its stack, never sent).
 */
export function createGrpcServer(opts: GrpcServerOptions): GrpcServer {
  const rt: AdapterRuntime = {
    log: opts.log,
    onCallEnd: opts.onCallEnd,
    translateError: opts.translateError,
    active: new Set<ActiveCall>(),
  };
  const adaptedPaths = new Set<string>();
  const services: DescService[] = [];
  const healthNames = new Set<string>([""]);
  const health = new HealthImplementation({ "": "SERVING" });
  let state: "new" | "listening" | "closed" = "new";
  let closing: Promise<void> | undefined;

  // Health and reflection are served by their own packages; this interceptor gives them the same
  // call-end reporting as adapted services (which report from their handler wrapper instead).
  const reportOtherCalls: grpc.ServerInterceptor = (descriptor, call) => {
    if (adaptedPaths.has(descriptor.path)) return new grpc.ServerInterceptingCall(call);
    const rpc = descriptor.path.replace(/^\//, "");
    const startMs = performance.now();
    let reported = false;
    const report = (code: number) => {
      if (reported) return;
      reported = true;
      reportCallEnd(rt, () => opts.log.child({ rpc }), rpc, code, startMs);
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          // Also fires after a sent status; then `reported` is already set.
          onCancel: () => report(isPastDeadline(call.getDeadline()) ? Code.DeadlineExceeded : Code.Canceled),
        }),
      sendStatus: (status, next) => {
        report(status.code);
        next(status);
      },
    });
  };

  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_BYTES,
    interceptors: [reportOtherCalls],
  });
  health.addToServer(server);

  return {
    add(service, impl, options) {
      if (state !== "new") throw new Error(`add ${service.typeName} before listen()`);
      const { definition, implementation } = adaptService(service, impl, rt, options?.decoders);
      server.addService(definition, implementation);
      for (const method of service.methods) adaptedPaths.add(methodPath(method));
      services.push(service);
      healthNames.add(service.typeName);
      health.setStatus(service.typeName, "SERVING");
    },

    health: {
      setStatus(service, status) {
        healthNames.add(service);
        health.setStatus(service, status);
      },
    },

    async listen(host, port) {
      if (state !== "new") throw new Error("listen() may be called once, before close()");
      state = "listening";
      const files = [...services.map((s) => s.file), ...HEALTH_FILES, ...REFLECTION_FILES];
      const names = [
        ...services.map((s) => s.typeName),
        ...[...HEALTH_FILES, ...REFLECTION_FILES].flatMap((f) => f.services.map((s) => s.typeName)),
      ];
      new ReflectionService(reflectionPackage(files), { services: names }).addToServer(server);
      const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise<number>((resolve, reject) => {
        server.bindAsync(
          address,
          opts.credentials ?? grpc.ServerCredentials.createInsecure(),
          (err, bound) => {
            if (err) reject(err);
            else resolve(bound);
          },
        );
      });
    },

    close(graceMs = DEFAULT_GRACE_MS) {
      closing ??= new Promise<void>((resolve) => {
        state = "closed";
        for (const name of healthNames) health.setStatus(name, "NOT_SERVING");
        const shutdown = () => new AppError(Code.Unavailable, "SHUTTING_DOWN", "server is shutting down");
        // Streams are long-lived: waiting for them would always use up the whole grace period.
        for (const call of rt.active) if (call.streaming) call.abort(shutdown());
        const timer = setTimeout(() => {
          for (const call of rt.active) call.abort(shutdown());
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}

type ReflectionPackage = ConstructorParameters<typeof ReflectionService>[0];

/**
 * Wraps encoded file descriptors (each file with its transitive imports) in the package-definition
 * shape @grpc/reflection reads; it only looks at `fileDescriptorProtos`.
 */
function reflectionPackage(roots: readonly DescFile[]): ReflectionPackage {
  const protos = new Map<string, FileDescriptorProto>();
  const visit = (file: DescFile) => {
    if (protos.has(file.proto.name)) return;
    protos.set(file.proto.name, file.proto);
    file.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  const fileDescriptorProtos = [...protos.values()].map((p) =>
    Buffer.from(toBinary(FileDescriptorProtoSchema, p)),
  );
  return {
    "switchboard.reflection": {
      format: "Protocol Buffer 3 FileDescriptorSet",
      type: {},
      fileDescriptorProtos,
    },
  } as unknown as ReflectionPackage;
}
