import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

// The tests here start the whole system in process on embedded defaults (PGlite: ~1 GB of memory
// and seconds to start), so files run one at a time.
export default mergeConfig(
  sharedConfig,
  defineConfig({ test: { testTimeout: 120_000, hookTimeout: 120_000, fileParallelism: false } }),
);
