import pg from "pg";
import { describe, expect, inject, onTestFinished, test } from "vitest";
import { databaseUrlFor, randomHex } from "../src/names.js";
import { cloneDatabase, createDatabase, dropDatabase, findDatabases } from "../src/postgres-admin.js";

async function scratchDatabase(): Promise<string> {
  const name = `sb_t_scratch_${randomHex(6)}`;
  await createDatabase(inject("postgresAdminUrl"), name);
  onTestFinished(() => dropDatabase(inject("postgresAdminUrl"), name));
  return name;
}

describe("cloneDatabase", () => {
  test("copies the source once its last session leaves", async () => {
    const adminUrl = inject("postgresAdminUrl");
    const source = await scratchDatabase();
    const copy = `${source}_copy`;
    onTestFinished(() => dropDatabase(adminUrl, copy));
    const session = new pg.Client({ connectionString: databaseUrlFor(adminUrl, source) });
    await session.connect();

    const cloning = cloneDatabase(adminUrl, copy, source);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await session.end();
    await cloning;

    expect(await findDatabases(adminUrl, copy)).toEqual([copy]);
  });
});

describe("findDatabases", () => {
  test("matches the prefix literally, not as a LIKE pattern", async () => {
    const name = await scratchDatabase();
    const prefix = name.slice(0, -3);
    expect(await findDatabases(inject("postgresAdminUrl"), prefix)).toEqual([name]);
    expect(await findDatabases(inject("postgresAdminUrl"), prefix.replaceAll("_", "%"))).toEqual([]);
  });
});
