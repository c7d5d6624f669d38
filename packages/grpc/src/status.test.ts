import * as grpc from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import { describe, expect, test } from "vitest";
import {
  STATUS_DETAILS_KEY,
  appErrorToStatus,
  errorFromServiceError,
  errorFromStatus,
  isServiceError,
} from "./status.js";

function serviceError(status: grpc.StatusObject): grpc.ServiceError {
  return Object.assign(new Error(`${status.code} ${status.details}`), status);
}

describe("appErrorToStatus / errorFromServiceError / errorFromStatus", () => {
  test("round-trips code, reason, message, metadata and retryAfterMs", () => {
    const original = new AppError(Code.ResourceExhausted, "RATE_LIMITED", "too many sends", {
      metadata: { limit: "100" },
      retryAfterMs: 2500,
      cause: new Error("secret cause"),
    });
    const status = appErrorToStatus(original);

    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toBe("too many sends");
    const raw = status.metadata.get(STATUS_DETAILS_KEY)[0];
    expect(Buffer.isBuffer(raw) && raw.toString("latin1")).not.toContain("secret cause");

    const back = errorFromServiceError(serviceError(status));
    expect(back).toBeInstanceOf(AppError);
    expect(back).toMatchObject({
      code: Code.ResourceExhausted,
      reason: "RATE_LIMITED",
      message: "too many sends",
      metadata: { limit: "100" },
      retryAfterMs: 2500,
    });
  });

  test("falls back to the code's name without (or with undecodable) details", () => {
    const plain = errorFromServiceError(
      serviceError({
        code: grpc.status.UNAVAILABLE,
        details: "no connection",
        metadata: new grpc.Metadata(),
      }),
    );
    expect(plain).toMatchObject({
      code: Code.Unavailable,
      reason: "UNAVAILABLE",
      message: "no connection",
      metadata: {},
    });

    const metadata = new grpc.Metadata();
    metadata.set(STATUS_DETAILS_KEY, Buffer.from([0xff, 0xff]));
    const garbled = errorFromServiceError(
      serviceError({ code: grpc.status.NOT_FOUND, details: "gone", metadata }),
    );
    expect(garbled).toMatchObject({ code: Code.NotFound, reason: "NOT_FOUND" });
  });

  test("errorFromStatus maps a status read off the wire as errorFromServiceError maps it", () => {
    const status = appErrorToStatus(
      new AppError(Code.FailedPrecondition, "GROUP_CLOSED", "the group is closed", {
        metadata: { groupId: "g1" },
        retryAfterMs: 100,
      }),
    );
    const raw = status.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer;
    const cause = new Error("transport");

    const fromWire = errorFromStatus(status.code, status.details, new Uint8Array(raw), cause);
    const fromGrpcJs = errorFromServiceError(serviceError(status));
    for (const err of [fromWire, fromGrpcJs]) {
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({
        code: Code.FailedPrecondition,
        reason: "GROUP_CLOSED",
        message: "the group is closed",
        metadata: { groupId: "g1" },
        retryAfterMs: 100,
      });
    }
    expect(fromWire.cause).toBe(cause);

    const bare = errorFromStatus(grpc.status.DEADLINE_EXCEEDED, "late");
    expect(bare).toMatchObject({
      code: Code.DeadlineExceeded,
      reason: "DEADLINE_EXCEEDED",
      message: "late",
      metadata: {},
      retryAfterMs: undefined,
    });
    expect(bare.cause).toBeUndefined();
    expect(errorFromStatus(99, "odd")).toMatchObject({ code: Code.Unknown, reason: "UNKNOWN" });
    expect(errorFromStatus(grpc.status.INTERNAL, "x", new Uint8Array([0xff]))).toMatchObject({
      code: Code.Internal,
      reason: "INTERNAL",
    });
  });

  test("isServiceError recognises grpc-js errors only", () => {
    expect(isServiceError(serviceError({ code: 5, details: "x", metadata: new grpc.Metadata() }))).toBe(true);
    expect(isServiceError(new Error("x"))).toBe(false);
    expect(isServiceError({ code: 5, metadata: new grpc.Metadata() })).toBe(false);
  });
});
