import * as grpc from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import { describe, expect, test } from "vitest";
import { STATUS_DETAILS_KEY, appErrorToStatus, errorFromServiceError, isServiceError } from "./status.js";

function serviceError(status: grpc.StatusObject): grpc.ServiceError {
  return Object.assign(new Error(`${status.code} ${status.details}`), status);
}

describe("appErrorToStatus / errorFromServiceError", () => {
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

  test("isServiceError recognises grpc-js errors only", () => {
    expect(isServiceError(serviceError({ code: 5, details: "x", metadata: new grpc.Metadata() }))).toBe(true);
    expect(isServiceError(new Error("x"))).toBe(false);
    expect(isServiceError({ code: 5, metadata: new grpc.Metadata() })).toBe(false);
  });
});
