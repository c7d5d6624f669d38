import { Migrator, type Kysely, type Migration, type MigrationProvider } from "kysely";
import type { IgDatabase } from "./schema.js";
import * as m0001 from "./migrations/0001-ig-init.js";

const MIGRATIONS: Record<string, Migration> = { "0001-ig-init": m0001 };
const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/**
 * Applies the gateway's pending migrations. They are tracked in their own tables
 * (`ig_kysely_migration`, `ig_kysely_migration_lock`) so they live beside the delivery service's
 * in one database; concurrent runs serialize on Kysely's lock. Throws the first failure.
 */
export async function migrateGateway(db: Kysely<IgDatabase>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider,
    migrationTableName: "ig_kysely_migration",
    migrationLockTableName: "ig_kysely_migration_lock",
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`gateway-instagram migration ${failed} failed`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
