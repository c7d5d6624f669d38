// Helpers for inside test files. The vitest globalSetup lives at "@switchboard/testkit/global-setup":
// it runs in vitest's main process, where this entry point (which calls test.extend) cannot load.
export { cloneTemplateDatabase, dbTest } from "./database.js";
export { withDatabase } from "./kysely.js";
export type { DatabaseClone } from "./database.js";
export { redisTestPrefix, redisUrl } from "./redis.js";
export type { ProvidedKey } from "./provided-context.js";
export { rejection } from "./rejection.js";
export { seededRandom } from "./random.js";
export type { SeededRandom } from "./random.js";
