// Shared vitest settings: resolve workspace packages to their TypeScript sources (the
// "switchboard-source" export condition), also in globalSetup (vitest's __vitest__ environment).
// "import" is deliberately absent: vitest passes these as Node --conditions to workers, and it
// would make CommonJS packages (pg) load ESM builds.
import { defineConfig } from "vitest/config";

const conditions = ["switchboard-source", "module", "node", "development|production"];

export const sharedConfig = defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["switchboard-source"] } },
  environments: { __vitest__: { resolve: { conditions } } },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
