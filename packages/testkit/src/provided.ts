import { inject, type ProvidedContext } from "vitest";
import type { ProvidedKey } from "./provided-context.js";

/**
 * A value `createGlobalSetup` provided, read inside a test worker. Throws a wiring hint when the
 * package's vitest config has no such globalSetup (vitest itself would just return `undefined`).
 */
export function requireProvided<K extends ProvidedKey>(key: K): ProvidedContext[K] {
  const value = inject(key) as ProvidedContext[K] | undefined;
  if (value === undefined) {
    throw new Error(
      `@switchboard/testkit: "${key}" was not provided. Export createGlobalSetup (from ` +
        '"@switchboard/testkit/global-setup") in test/global-setup.ts and list that file in ' +
        "vitest.config.ts test.globalSetup.",
    );
  }
  return value;
}
