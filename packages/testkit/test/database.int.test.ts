import { describe, expect, inject, onTestFinished, test } from "vitest";
import pg from "pg";
import { cloneTemplateDatabase, dbTest, withDatabase } from "../src/index.js";

async function databaseExists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: inject("postgresAdminUrl") });
  await client.connect();
  try {
    const result = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    return result.rowCount === 1;
  } finally {
    await client.end();
  }
}

async function cloneWithDb() {
  const clone = await cloneTemplateDatabase();
  const db = withDatabase(clone.url);
  onTestFinished(async () => {
    await db.destroy();
    await clone.drop();
  });
  return { clone, db };
}

describe("cloneTemplateDatabase", () => {
  test("returns a database that has the migrated table", async () => {
    const { db } = await cloneWithDb();
    expect(await db.selectFrom("widget").selectAll().execute()).toEqual([]);
  });

  test("returns clones that do not share rows", async () => {
    const first = await cloneWithDb();
    const second = await cloneWithDb();
    expect(first.clone.name).not.toBe(second.clone.name);

    await first.db.insertInto("widget").values({ id: 1, name: "only in first" }).execute();

    expect(await first.db.selectFrom("widget").select("name").execute()).toEqual([{ name: "only in first" }]);
    expect(await second.db.selectFrom("widget").selectAll().execute()).toEqual([]);
  });

  test("creates clones concurrently", async () => {
    const clones = await Promise.all(Array.from({ length: 6 }, () => cloneTemplateDatabase()));
    onTestFinished(() => Promise.all(clones.map((clone) => clone.drop())).then(() => undefined));
    expect(new Set(clones.map((clone) => clone.name)).size).toBe(6);
  });

  test("drop removes the database even with open sessions", async () => {
    const clone = await cloneTemplateDatabase();
    const db = withDatabase(clone.url);
    await db.selectFrom("widget").selectAll().execute();

    await clone.drop();

    expect(await databaseExists(clone.name)).toBe(false);
    await expect(db.selectFrom("widget").selectAll().execute()).rejects.toThrow();
    await db.destroy();
  });

  test("drop is idempotent", async () => {
    const clone = await cloneTemplateDatabase();
    await clone.drop();
    await expect(clone.drop()).resolves.toBeUndefined();
  });
});

describe("dbTest", () => {
  let previousUrl: string | undefined;

  dbTest("provides the URL of a fresh migrated clone", async ({ databaseUrl }) => {
    previousUrl = databaseUrl;
    const db = withDatabase(databaseUrl);
    onTestFinished(() => db.destroy());
    await db.insertInto("widget").values({ id: 7, name: "seven" }).execute();
    expect(await db.selectFrom("widget").select("id").execute()).toEqual([{ id: 7 }]);
  });

  dbTest("drops the clone after the test", async () => {
    expect(previousUrl).toBeDefined();
    const name = new URL(previousUrl ?? "").pathname.slice(1);
    expect(await databaseExists(name)).toBe(false);
  });
});
