import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

// One file, one system of five processes: tests in it run in order and share that system.
export default mergeConfig(
  sharedConfig,
  defineConfig({
    test: {
      globalSetup: ["./test/global-setup.ts"],
      testTimeout: 90_000,
      hookTimeout: 120_000,
      fileParallelism: false,
    },
  }),
);
