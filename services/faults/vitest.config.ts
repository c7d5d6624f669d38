import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

export default mergeConfig(
  sharedConfig,
  defineConfig({
    test: {
      globalSetup: ["./test/global-setup.ts"],
      testTimeout: 300_000,
      hookTimeout: 60_000,
      fileParallelism: false,
    },
  }),
);
