import { describe, expect, test } from "vitest";
import { AppError, Code, codeName, httpStatusOf, isAppError } from "./index.js";

describe("AppError", () => {
  test("carries code, reason, message and cause", () => {
    const cause = new Error("boom");
    const err = new AppError(Code.NotFound, "DEVICE_NOT_FOUND", "device 3 not found", { cause });
    expect(err.code).toBe(Code.NotFound);
    expect(err.reason).toBe("DEVICE_NOT_FOUND");
    expect(err.message).toBe("device 3 not found");
    expect(err.cause).toBe(cause);
    expect(isAppError(err)).toBe(true);
    expect(isAppError(new Error("x"))).toBe(false);
  });

  test("maps codes to names and HTTP statuses", () => {
    expect(codeName(Code.InvalidArgument)).toBe("INVALID_ARGUMENT");
    expect(httpStatusOf(Code.InvalidArgument)).toBe(400);
    expect(httpStatusOf(Code.Unauthenticated)).toBe(401);
    expect(httpStatusOf(Code.ResourceExhausted)).toBe(429);
    expect(httpStatusOf(Code.Canceled)).toBe(499);
    expect(httpStatusOf(Code.Internal)).toBe(500);
  });
});
