import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

// The breakup drill starts real service processes: one file at a time, generous timeouts.
export default mergeConfig(
  sharedConfig,
  defineConfig({
    test: {
      globalSetup: ["./test/global-setup.ts"],
      testTimeout: 120_000,
      hookTimeout: 120_000,
      fileParallelism: false,
    },
  }),
);
