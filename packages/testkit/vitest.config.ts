import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

// vitest hands ssr.resolve.conditions to test workers as Node `--conditions`; with "import" among
// them, `require("pg-pool")` inside pg loads pg-pool's ESM build and every pg Pool throws
// "Class extends value [object Module]". Drop it until vitest.shared.ts does.
const ssrConditions = (sharedConfig.ssr?.resolve?.conditions ?? []).filter((c) => c !== "import");

export default mergeConfig(
  {
    ...sharedConfig,
    ssr: { ...sharedConfig.ssr, resolve: { ...sharedConfig.ssr?.resolve, conditions: ssrConditions } },
  },
  defineConfig({ test: { globalSetup: ["./test/global-setup.ts"] } }),
);
