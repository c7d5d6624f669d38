import { createGlobalSetup } from "@switchboard/testkit/global-setup";
import type { TestProject } from "vitest/node";
import { migrateUrl } from "../src/index.js";
import { createPgliteTemplate } from "./pglite-template.js";

const servers = createGlobalSetup({ name: "storage", migrate: async (url) => void (await migrateUrl(url)) });

/**
 * testkit's setup (PostgreSQL template database, Redis) and, alongside it, the migrated PGlite
 * data directory every test file copies (`pgliteTemplateDir`). Teardown removes both.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [serversSetup, pglite] = await Promise.allSettled([servers(project), createPgliteTemplate()]);
  if (serversSetup.status === "fulfilled" && pglite.status === "fulfilled") {
    project.provide("pgliteTemplateDir", pglite.value.dir);
    return async () => {
      try {
        await serversSetup.value();
      } finally {
        await pglite.value.remove();
      }
    };
  }
  // Undo whichever half succeeded; the setup error is the one worth reporting.
  if (serversSetup.status === "fulfilled") await serversSetup.value().catch(() => undefined);
  if (pglite.status === "fulfilled") await pglite.value.remove().catch(() => undefined);
  throw [serversSetup, pglite].find((r): r is PromiseRejectedResult => r.status === "rejected")?.reason;
}
