export type * from "./schema.js";
export { createDatabase, migrateToLatest, migrateUrl } from "./database.js";
export type { DatabaseOptions } from "./database.js";
export { createEmbeddedDatabase } from "./embedded-database.js";
export type { EmbeddedDatabaseOptions } from "./embedded-database.js";
export {
  isUniqueViolation,
  isRetryableTransactionError,
  isUnavailableError,
  pgErrorCode,
} from "./pg-errors.js";
export * from "./directory-repository.js";
export * from "./key-repository.js";
export * from "./message-repository.js";
export * from "./group-repository.js";
export * from "./queue-batch-repository.js";
export * from "./relationship-repository.js";
export * from "./provider-repository.js";
export * from "./safety-repository.js";
export * from "./report-repository.js";
export * from "./app-export.js";
