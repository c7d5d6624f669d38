import { AppError, Code } from "@switchboard/errors";
import Fastify from "fastify";
import { describe, expect, onTestFinished, test } from "vitest";
import { registerProblemHandler } from "./problem.js";

/** A bare app whose one route throws `err`, with the problem handler installed. */
async function failing(err: Error) {
  const app = Fastify();
  registerProblemHandler(app);
  app.get("/fail", () => {
    throw err;
  });
  await app.ready();
  onTestFinished(() => app.close());
  return app.inject({ method: "GET", url: "/fail" });
}

describe("registerProblemHandler", () => {
  test("renders RATE_LIMITED as a 429 problem with the retry hint as Retry-After in whole seconds", async () => {
    const res = await failing(
      new AppError(Code.ResourceExhausted, "RATE_LIMITED", "newconv rate limit exceeded", {
        retryAfterMs: 1_799_200,
      }),
    );
    expect(res.statusCode).toBe(429);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.headers["retry-after"]).toBe("1800");
    expect(res.json()).toMatchObject({
      type: "/errors/rate-limited",
      status: 429,
      reason: "RATE_LIMITED",
      code: "RESOURCE_EXHAUSTED",
    });
  });

  test("gives 429 and 503 a Retry-After of at least one second without a hint, and other errors none", async () => {
    const zero = await failing(
      new AppError(Code.ResourceExhausted, "RATE_LIMITED", "x", { retryAfterMs: 0 }),
    );
    expect(zero.headers["retry-after"]).toBe("1");
    const noHint = await failing(new AppError(Code.Unavailable, "DELIVERY_UNAVAILABLE", "down"));
    expect([noHint.statusCode, noHint.headers["retry-after"]]).toEqual([503, "1"]);
    const invalid = await failing(new AppError(Code.InvalidArgument, "BAD", "bad"));
    expect([invalid.statusCode, invalid.headers["retry-after"]]).toEqual([400, undefined]);
  });
});
