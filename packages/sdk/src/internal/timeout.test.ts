import { afterEach, describe, expect, test, vi } from "vitest";
import { withTimeout } from "./timeout.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("withTimeout", () => {
  test("returns what the call returns and clears its timer at once", async () => {
    vi.useFakeTimers();
    let seen: AbortSignal | undefined;
    const value = await withTimeout(1000, async (signal) => {
      seen = signal;
      return 42;
    });
    expect(value).toBe(42);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(5000);
    expect(seen?.aborted).toBe(false);
  });

  test("aborts the call's signal with a TimeoutError once the time is up", async () => {
    vi.useFakeTimers();
    const call = withTimeout(
      1000,
      (signal) =>
        new Promise((_, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason as Error));
        }),
    );
    const settled = call.catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(999);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    const err = (await settled) as DOMException;
    expect(err.name).toBe("TimeoutError");
    expect(vi.getTimerCount()).toBe(0);
  });

  test("passes a failure through and clears the timer", async () => {
    vi.useFakeTimers();
    await expect(
      withTimeout(1000, async () => {
        throw new Error("refused");
      }),
    ).rejects.toThrow("refused");
    expect(vi.getTimerCount()).toBe(0);
  });
});
