import { defineConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.js";

// Two projects: `unit` (src/, no servers) and `int` (test/, a real delivery service over the
// PostgreSQL and Redis named by DATABASE_URL / REDIS_URL, or testcontainers). The shared include
// list is dropped here: projects inherit it and would otherwise run every file twice.
const { include: _sharedInclude, ...sharedTest } = sharedConfig.test ?? {};

export default defineConfig({
  ...sharedConfig,
  test: {
    ...sharedTest,
    projects: [
      { extends: true, test: { name: "unit", include: ["src/**/*.test.ts"] } },
      {
        extends: true,
        test: {
          name: "int",
          include: ["test/**/*.int.test.ts"],
          globalSetup: ["./test/global-setup.ts"],
          testTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
