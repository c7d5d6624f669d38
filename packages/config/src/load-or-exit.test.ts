import { describe, expect, onTestFinished, test, vi } from "vitest";
import { ConfigError, EXIT_CONFIG, loadOrExit } from "./index.js";

class ExitCalled extends Error {
  constructor(readonly code: unknown) {
    super(`process.exit(${String(code)})`);
  }
}

/** Replaces process.exit for one test so that it throws instead of ending the test run. */
function stubExit() {
  const exit = vi.spyOn(process, "exit").mockImplementation((code) => {
    throw new ExitCalled(code);
  });
  onTestFinished(() => exit.mockRestore());
  return exit;
}

function memoryStderr() {
  const chunks: string[] = [];
  return { chunks, write: (chunk: string) => chunks.push(chunk) };
}

describe("loadOrExit", () => {
  test("returns the loaded value", () => {
    const exit = stubExit();
    expect(loadOrExit(() => ({ port: 1 }), memoryStderr())).toEqual({ port: 1 });
    expect(exit).not.toHaveBeenCalled();
  });

  test("prints every problem and exits with EX_CONFIG on a ConfigError", () => {
    const exit = stubExit();
    const stderr = memoryStderr();
    const load = () => {
      throw new ConfigError(["A: required but not set", 'B: expected an integer, got "x"']);
    };
    expect(() => loadOrExit(load, stderr)).toThrow(ExitCalled);
    expect(exit).toHaveBeenCalledWith(EXIT_CONFIG);
    expect(EXIT_CONFIG).toBe(78);
    expect(stderr.chunks.join("")).toBe(
      'configuration error:\nA: required but not set\nB: expected an integer, got "x"\n',
    );
  });

  test("rethrows other errors", () => {
    const exit = stubExit();
    const stderr = memoryStderr();
    const boom = new Error("boom");
    expect(() =>
      loadOrExit(() => {
        throw boom;
      }, stderr),
    ).toThrow(boom);
    expect(exit).not.toHaveBeenCalled();
    expect(stderr.chunks).toEqual([]);
  });
});
