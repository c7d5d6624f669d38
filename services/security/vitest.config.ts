import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

// Each file starts its own system of four processes: files run one after the other.
export default mergeConfig(
  sharedConfig,
  defineConfig({
    test: {
      globalSetup: ["./test/global-setup.ts"],
      testTimeout: 240_000,
      hookTimeout: 180_000,
      fileParallelism: false,
    },
  }),
);
