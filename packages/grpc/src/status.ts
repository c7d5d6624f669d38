// Error <-> gRPC status mapping, both directions: the server edge renders AppError as a status
// with google.rpc details, and clients turn a ServiceError (or a status they read off the wire
// themselves) back into the same AppError.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack, anyUnpack, durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import type { Any } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { AppError, Code, codeName } from "@switchboard/errors";
import { googleRpcErrorDetails, googleRpcStatus } from "@switchboard/proto";

/** The `ErrorInfo.domain` Switchboard servers put on every error they send. */
export const ERROR_DOMAIN = "switchboard";

/** Trailer carrying a binary `google.rpc.Status` with the error's details (gRPC convention). */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/**
 * Renders an AppError as a gRPC status: its code and message, plus `grpc-status-details-bin`
 * holding `google.rpc.Status{code, message, details: [ErrorInfo{reason, domain, metadata}]}`
 * and a `RetryInfo` when `retryAfterMs` is set. The error's `cause` is never included.
 */
export function appErrorToStatus(err: AppError): grpc.StatusObject {
  const details: Any[] = [
    anyPack(
      googleRpcErrorDetails.ErrorInfoSchema,
      create(googleRpcErrorDetails.ErrorInfoSchema, {
        reason: err.reason,
        domain: ERROR_DOMAIN,
        metadata: err.metadata,
      }),
    ),
  ];
  if (err.retryAfterMs !== undefined) {
    details.push(
      anyPack(
        googleRpcErrorDetails.RetryInfoSchema,
        create(googleRpcErrorDetails.RetryInfoSchema, {
          retryDelay: durationFromMs(Math.max(0, Math.round(err.retryAfterMs))),
        }),
      ),
    );
  }
  const status = create(googleRpcStatus.StatusSchema, { code: err.code, message: err.message, details });
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(toBinary(googleRpcStatus.StatusSchema, status)));
  return { code: err.code as number, details: err.message, metadata };
}

/** Narrows an unknown value to a grpc-js `ServiceError` (what failed client calls reject with). */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<grpc.ServiceError>).code === "number" &&
    (err as Partial<grpc.ServiceError>).metadata instanceof grpc.Metadata
  );
}

/**
 * Maps a failed call's `ServiceError` back to an AppError with the same code and message, as
 * {@link errorFromStatus} does with the `grpc-status-details-bin` metadata. The ServiceError is
 * kept as `cause`.
 */
export function errorFromServiceError(err: grpc.ServiceError): AppError {
  return errorFromStatus(err.code, err.details, statusDetailsBytes(err.metadata), err);
}

/**
 * Builds the AppError of a failed call from its gRPC status, for clients that read the status
 * themselves instead of through grpc-js: `code` (one outside 1..16 becomes UNKNOWN), `message`
 * (the decoded `grpc-message`) and `statusDetails`, the bytes of `grpc-status-details-bin` (a
 * binary `google.rpc.Status`). The reason, metadata and retry delay come from its
 * `ErrorInfo`/`RetryInfo` when present; otherwise (no details, or undecodable ones) the reason is
 * the code's name (e.g. `UNAVAILABLE`).
 */
export function errorFromStatus(
  code: number,
  message: string,
  statusDetails?: Uint8Array,
  cause?: unknown,
): AppError {
  const known = isKnownCode(code) ? code : Code.Unknown;
  const details = decodeStatusDetails(statusDetails);
  return new AppError(known, details.reason ?? codeName(known), message, {
    cause,
    metadata: details.metadata,
    ...(details.retryAfterMs === undefined ? {} : { retryAfterMs: details.retryAfterMs }),
  });
}

interface DecodedDetails {
  reason?: string;
  metadata?: Record<string, string>;
  retryAfterMs?: number;
}

function statusDetailsBytes(metadata: grpc.Metadata | undefined): Uint8Array | undefined {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  return raw === undefined || typeof raw === "string" ? undefined : raw;
}

function decodeStatusDetails(raw: Uint8Array | undefined): DecodedDetails {
  if (raw === undefined) return {};
  const out: DecodedDetails = {};
  try {
    const status = fromBinary(googleRpcStatus.StatusSchema, raw);
    for (const any of status.details) {
      const info = anyUnpack(any, googleRpcErrorDetails.ErrorInfoSchema);
      if (info !== undefined && out.reason === undefined && info.reason !== "") {
        out.reason = info.reason;
        out.metadata = { ...info.metadata };
      }
      const retry = anyUnpack(any, googleRpcErrorDetails.RetryInfoSchema);
      if (retry?.retryDelay !== undefined && out.retryAfterMs === undefined) {
        out.retryAfterMs = durationMs(retry.retryDelay);
      }
    }
  } catch {
    // A peer sent undecodable details: the code and message still stand on their own.
  }
  return out;
}

function isKnownCode(code: number): code is Code {
  // Code covers the canonical codes 1 (CANCELLED) .. 16 (UNAUTHENTICATED) without gaps.
  return Number.isInteger(code) && code >= 1 && code <= 16;
}

/** The canonical name of a status code including `OK` (codeName covers only error codes). */
export function statusName(code: number): string {
  return code === 0 ? "OK" : isKnownCode(code) ? codeName(code) : "UNKNOWN";
}
