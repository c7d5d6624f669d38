import { fromBinary, toBinary } from "@bufbuild/protobuf";

/** The part of a vitest spy (`vi.fn`) read here, so that this module does not import vitest. */
interface Spy {
  mock: { calls: readonly unknown[] };
  mockClear(): void;
}

function spyOf(f: unknown, name: string): Spy {
  if (typeof f === "function" && "mock" in f) return f as unknown as Spy;
  throw new Error(`protobufEsCalls: @bufbuild/protobuf's ${name} is not a spy; vi.mock it in the test file`);
}

/**
 * How many times protobuf-es's `toBinary` and `fromBinary` ran during `run`: 0 shows that a codec
 * took its hand-written path. The test file must have replaced both with spies (vitest applies a
 * test file's `vi.mock` to this module too):
 *
 * ```ts
 * vi.mock("@bufbuild/protobuf", async (importOriginal) => {
 *   const actual = await importOriginal<typeof protobufEsModule>();
 *   return { ...actual, toBinary: vi.fn(actual.toBinary), fromBinary: vi.fn(actual.fromBinary) };
 * });
 * ```
 *
 * Throws if they are not spies.
 */
export function protobufEsCalls(run: () => void): { toBinary: number; fromBinary: number } {
  const to = spyOf(toBinary, "toBinary");
  const from = spyOf(fromBinary, "fromBinary");
  to.mockClear();
  from.mockClear();
  run();
  return { toBinary: to.mock.calls.length, fromBinary: from.mock.calls.length };
}

/**
 * Runs `f`, giving its result or its error's text: a codec and protobuf-es must agree on both
 * (`expect(outcome(() => codec(x))).toStrictEqual(outcome(() => protobufEs(x)))`).
 */
export function outcome<T>(f: () => T): T | string {
  try {
    return f();
  } catch (err) {
    return String(err);
  }
}
