import { createGlobalSetup } from "../src/global-setup.js";
import { withDatabase } from "../src/kysely.js";

/** A stand-in for a package's migrations: one table, so tests can see the template's schema. */
async function migrate(databaseUrl: string): Promise<void> {
  const db = withDatabase(databaseUrl);
  try {
    await db.schema
      .createTable("widget")
      .addColumn("id", "integer", (col) => col.primaryKey())
      .addColumn("name", "text", (col) => col.notNull())
      .execute();
  } finally {
    await db.destroy();
  }
}

export default createGlobalSetup({ name: "testkit", migrate });
