import { sql } from "kysely";
import { expect, test } from "vitest";
import { describeBackends } from "./backends.js";

// Array parameters reach PostgreSQL as array literals built by database.ts (arrayLiteral) on the
// server backend: every awkward element must come back exactly as sent.
describeBackends("database connections", (ctx) => {
  test("strings with quotes, backslashes, braces, commas and the word NULL round-trip", async () => {
    const values = ['a"b', "c\\d", "", "{x}", "1,2", "NULL", " spaced ", 'mixed \\" both', "ü€😀", null];
    const r = await sql<{ v: string | null; i: number }>`
      SELECT v, i::int AS i FROM unnest(${values}::text[]) WITH ORDINALITY AS t(v, i) ORDER BY i
    `.execute(ctx.db);
    expect(r.rows.map((row) => row.v)).toEqual(values);
  });

  test("strings sent unquoted (uuids, words, signs, dots, colons) and every spelling of null", async () => {
    const values = [
      "00000000-0000-4000-8000-00000000000a",
      "null",
      "Null",
      "NULLS",
      "nul",
      "a_b.c:d+e-f",
      "-1",
      "1e5",
      "+",
      "x y",
      "tab\tin",
      "new\nline",
    ];
    const r = await sql<{ v: string | null }>`
      SELECT v FROM unnest(${values}::text[]) WITH ORDINALITY AS t(v, i) ORDER BY i
    `.execute(ctx.db);
    expect(r.rows.map((row) => row.v)).toEqual(values);
  });

  test("numbers, bigints, booleans and nulls keep their values and positions", async () => {
    const ints = [0, -1, 2_147_483_647, null, 42];
    const bigs = [1_700_000_000_000, BigInt("9007199254740993"), null];
    const bools = [true, false, null];
    const r = await sql<{ ints: number[]; bigs: string[]; bools: Array<boolean | null> }>`
      SELECT ${ints}::int[] AS ints, ${bigs}::bigint[]::text[] AS bigs, ${bools}::bool[] AS bools
    `.execute(ctx.db);
    expect(r.rows[0]?.ints).toEqual(ints);
    expect(r.rows[0]?.bigs).toEqual(["1700000000000", "9007199254740993", null]);
    expect(r.rows[0]?.bools).toEqual(bools);
  });

  test("an empty array is an empty array, and a uuid array casts", async () => {
    const ids = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"];
    const r = await sql<{ n: number; first: string }>`
      SELECT cardinality(${[] as string[]}::text[])::int AS n, (${ids}::uuid[])[1]::text AS first
    `.execute(ctx.db);
    expect(r.rows[0]).toEqual({ n: 0, first: ids[0] });
  });

  test("pooled PostgreSQL connections plan the marked statements generically", async (t) => {
    if (ctx.name !== "postgres") t.skip(); // PGlite has no pool and no named statements
    const r = await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(ctx.db);
    expect(r.rows[0]?.plan_cache_mode).toBe("force_generic_plan");
  });

  test("a key lookup planned while its table was empty still uses the index as the table grows", async (t) => {
    if (ctx.name !== "postgres") t.skip(); // PGlite: one embedded session, default planner settings
    // One pooled session: a temporary table analyzed empty (a fresh install, or the time before
    // autovacuum's next ANALYZE), a statement prepared then, and rows added without a new ANALYZE:
    // the cached generic plan is reused, so it must probe the key rather than scan.
    const plan = await ctx.db.connection().execute(async (conn) => {
      await sql`CREATE TEMP TABLE probe_t (a uuid, b int, c text, PRIMARY KEY (a, b, c))`.execute(conn);
      try {
        await sql`ANALYZE probe_t`.execute(conn);
        await sql
          .raw(
            `PREPARE probe_p(uuid[]) AS SELECT 1 FROM unnest($1) AS k(a)
          JOIN LATERAL (SELECT 1 FROM probe_t WHERE a = k.a AND b = 1 AND c = 'x' LIMIT 1) p ON true`,
          )
          .execute(conn);
        await sql.raw(`EXECUTE probe_p('{00000000-0000-4000-8000-000000000001}')`).execute(conn);
        await sql`INSERT INTO probe_t SELECT gen_random_uuid(), g, 'x' FROM generate_series(1, 5000) g`.execute(
          conn,
        );
        const r = await sql
          .raw<{ "QUERY PLAN": string }>(`EXPLAIN EXECUTE probe_p('{00000000-0000-4000-8000-000000000001}')`)
          .execute(conn);
        return r.rows.map((row) => row["QUERY PLAN"]).join("\n");
      } finally {
        await sql
          .raw(`DEALLOCATE probe_p`)
          .execute(conn)
          .catch(() => undefined);
        await sql`DROP TABLE probe_t`.execute(conn);
      }
    });
    expect(plan).toMatch(/Index (Only )?Scan using probe_t_pkey/);
    expect(plan).not.toMatch(/Seq Scan on probe_t/);
  });
});
