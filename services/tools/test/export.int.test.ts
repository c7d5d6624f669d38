// The export writes one app's complete state and nothing of the others; the import restores it
// into a fresh database in one transaction. State of all three apps is written through the storage
// repositories (see seed.ts), against real PostgreSQL with the delivery and all gateway tables.
import { randomInt } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  TABLE_EXPORT_RULES,
  createDatabase,
  exportApp,
  findRelationsWithoutExportRule,
  importApp,
  type Database,
} from "@switchboard/storage";
import { cloneTemplateDatabase, rejection, type DatabaseClone } from "@switchboard/testkit";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { exportAppToFile } from "../src/app-files.js";
import { seedApps, type SeedAppName, type SeededApp } from "./seed.js";

interface Line {
  format?: string;
  table?: string;
  columns?: { name: string; type: string }[];
  row?: Record<string, unknown>;
  end?: string;
  rows?: number;
  sequence?: string;
  lastValue?: number;
  done?: boolean;
}

async function exportLines(db: Kysely<Database>, app: number): Promise<string[]> {
  const lines: string[] = [];
  await exportApp(db, app, (line) => void lines.push(line), { batchSize: 4 });
  return lines;
}

async function* iterate(lines: readonly string[]): AsyncIterable<string> {
  for (const line of lines) yield line;
}

const rowsOf = (lines: readonly string[]) =>
  lines.map((l) => JSON.parse(l) as Line).filter((l) => l.row !== undefined);

const countsOf = (lines: readonly string[]): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const l of rowsOf(lines)) if (l.table) counts[l.table] = (counts[l.table] ?? 0) + 1;
  return counts;
};

describe("exportApp / importApp", () => {
  const clones: DatabaseClone[] = [];
  const dbs: Kysely<Database>[] = [];
  let source: Kysely<Database>;
  let seeded: Record<SeedAppName, SeededApp>;
  const exports = {} as Record<SeedAppName, string[]>;

  const freshClone = async (): Promise<{ clone: DatabaseClone; db: Kysely<Database> }> => {
    const clone = await cloneTemplateDatabase();
    clones.push(clone);
    const db = createDatabase({ url: clone.url, poolSize: 2 });
    dbs.push(db);
    return { clone, db };
  };
  const freshDatabase = async (): Promise<Kysely<Database>> => (await freshClone()).db;

  beforeAll(async () => {
    source = await freshDatabase();
    seeded = await seedApps(source, String(randomInt(1_000_000)).padStart(6, "0"));
    for (const a of Object.values(seeded)) exports[a.name] = await exportLines(source, a.app);
  });

  afterAll(async () => {
    for (const db of dbs) await db.destroy();
    for (const clone of clones) await clone.drop();
  });

  test("has an export rule for every table and sequence of the schema (delivery and all gateways)", async () => {
    expect(await findRelationsWithoutExportRule(source)).toEqual([]);
  });

  test("refuses to export when a table has no export rule, and leaves no file behind", async () => {
    const { clone, db } = await freshClone();
    await sql`CREATE TABLE future_feature (account_id uuid PRIMARY KEY, app smallint NOT NULL)`.execute(db);
    const err = await rejection(exportLines(db, 1));
    expect(err.reason).toBe("EXPORT_RULE_MISSING");
    expect(err.message).toContain("table future_feature");
    const dir = await mkdtemp(join(tmpdir(), "export-test-"));
    try {
      const path = join(dir, "whatsapp.ndjson");
      expect((await rejection(exportAppToFile(clone.url, "whatsapp", path))).reason).toBe(
        "EXPORT_RULE_MISSING",
      );
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("refuses a target that lacks a migration the export was taken with", async () => {
    const target = await freshDatabase();
    await sql`DELETE FROM kysely_migration WHERE name = '0004-safety'`.execute(target);
    const err = await rejection(importApp(target, iterate(exports.whatsapp)));
    expect(err.reason).toBe("IMPORT_SCHEMA_BEHIND");
    expect(err.message).toContain("0004-safety");
  });

  test("counts the queued messages whose sender is of another app", async () => {
    const summary = await exportApp(source, 1, () => undefined);
    // The previous app's first account wrote to WhatsApp's first account (two devices), and
    // Messenger's first account posted to the group (WhatsApp's first account, two devices).
    expect(summary.queuedFromOtherApps).toBe(4);
  });

  test("holds every row of the app, table by table", () => {
    for (const a of Object.values(seeded)) {
      const counts = countsOf(exports[a.name]);
      expect({ app: a.name, counts }).toEqual({ app: a.name, counts: a.expected });
    }
  });

  test("matches the database: every row the rules select, and only rows of the app where a table has an app column", async () => {
    for (const a of Object.values(seeded)) {
      const rows = rowsOf(exports[a.name]);
      for (const r of rows) {
        if (r.row && "app" in r.row && r.table !== "groups" && r.table !== "group_payloads")
          expect({ table: r.table, app: r.row.app }).toEqual({ table: r.table, app: a.app });
      }
      // The app's own accounts, and no other.
      expect(
        rows
          .filter((r) => r.table === "accounts")
          .map((r) => r.row?.id)
          .sort(),
      ).toEqual(a.accounts.map((acc) => acc.id).sort());
      // Every table's app-column rows in the database are all in the export.
      for (const rule of TABLE_EXPORT_RULES) {
        const hasApp = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = ${rule.table} AND column_name = 'app'`.execute(
          source,
        );
        if (hasApp.rows[0]?.n !== 1 || rule.table === "groups" || rule.table === "group_payloads") continue;
        const inDb = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql.table(rule.table)} WHERE app = ${a.app}`.execute(source);
        expect({ table: rule.table, rows: rows.filter((r) => r.table === rule.table).length }).toEqual({
          table: rule.table,
          rows: inDb.rows[0]?.n,
        });
      }
    }
  });

  test("names other apps' accounts only in reference columns, and never their handles", () => {
    const refs = new Map(TABLE_EXPORT_RULES.map((r) => [r.table, new Set(r.foreignRefs ?? [])]));
    for (const a of Object.values(seeded)) {
      const others = Object.values(seeded).filter((o) => o.app !== a.app);
      const otherIds = new Set(others.flatMap((o) => o.accounts.map((acc) => acc.id)));
      const text = exports[a.name].join("\n");
      for (const o of others) for (const acc of o.accounts) expect(text).not.toContain(acc.handle);
      const misplaced: string[] = [];
      let references = 0;
      for (const r of rowsOf(exports[a.name])) {
        for (const [column, value] of Object.entries(r.row ?? {})) {
          if (typeof value !== "string" || !otherIds.has(value)) continue;
          if (refs.get(r.table ?? "")?.has(column)) references++;
          else misplaced.push(`${r.table}.${column}`);
        }
      }
      expect({ app: a.name, misplaced }).toEqual({ app: a.name, misplaced: [] });
      // The seed has cross-app senders, peers and a foreign group creator: the scan saw them.
      expect(references).toBeGreaterThan(0);
    }
  });

  test("copies a cross-app group into each app's export with only that app's memberships", () => {
    for (const a of Object.values(seeded)) {
      const rows = rowsOf(exports[a.name]);
      const groups = rows.filter((r) => r.table === "groups");
      expect(groups).toHaveLength(1);
      const members = rows.filter((r) => r.table === "group_members").map((r) => r.row?.account_id);
      expect(members).toEqual([a.accounts[0].id]);
    }
  });

  test("carries bytea as base64 and the Messenger-style id sequence with Messenger", () => {
    const lines = exports.messenger.map((l) => JSON.parse(l) as Line);
    const device = lines.find((l) => l.table === "devices" && l.row)?.row;
    expect(typeof device?.identity_key).toBe("string");
    expect(Buffer.from(device?.identity_key as string, "base64")).toHaveLength(33);
    expect(lines.find((l) => l.sequence === "ms_user_id_seq")?.lastValue).toBe(100041);
    expect(exports.whatsapp.some((l) => l.includes("ms_user_id_seq"))).toBe(false);
  });

  test("restores an export into a fresh database, which then exports the same rows", async () => {
    const target = await freshDatabase();
    const summary = await importApp(target, iterate(exports.whatsapp), { expectApp: 1 });
    // Relationships and invitations naming another app's account cannot exist without it.
    expect(summary.dropped).toEqual({ relationships: 1 });
    expect(summary.sequences).toEqual({});
    const again = await exportLines(target, 1);
    const comparable = (lines: string[]) =>
      rowsOf(lines)
        .filter((r) => !(r.table === "relationships" && r.row?.state === 2))
        .map((r) => JSON.stringify(r));
    expect(comparable(again)).toEqual(comparable(exports.whatsapp));
    expect(countsOf(again).relationships).toBe(1);
  });

  test("restores the Messenger-style id sequence", async () => {
    const target = await freshDatabase();
    const summary = await importApp(target, iterate(exports.messenger));
    // Messenger's block of an Instagram user, and its invitation from a WhatsApp user, cannot be held.
    expect(summary.dropped).toEqual({ relationships: 1, group_invitations: 1 });
    const next = await sql<{ id: string }>`SELECT nextval('ms_user_id_seq')::text AS id`.execute(target);
    expect(next.rows[0]?.id).toBe("100042");
  });

  test("stores nothing from a truncated export", async () => {
    const target = await freshDatabase();
    const cut = exports.instagram.slice(0, -3);
    const err = await rejection(importApp(target, iterate(cut)));
    expect(err.reason).toBe("EXPORT_TRUNCATED");
    const accounts = await sql<{ n: number }>`SELECT count(*)::int AS n FROM accounts`.execute(target);
    expect(accounts.rows[0]?.n).toBe(0);
  });

  test("refuses a target that already holds state", async () => {
    const err = await rejection(importApp(source, iterate(exports.instagram)));
    expect(err.reason).toBe("IMPORT_TARGET_NOT_EMPTY");
  });

  test("refuses an export of another app than expected, and lines that are not an export", async () => {
    const target = await freshDatabase();
    expect((await rejection(importApp(target, iterate(exports.instagram), { expectApp: 1 }))).reason).toBe(
      "EXPORT_APP_MISMATCH",
    );
    expect((await rejection(importApp(target, iterate(["{not json"])))).reason).toBe("EXPORT_MALFORMED");
    expect((await rejection(importApp(target, iterate([JSON.stringify({ hello: 1 })])))).reason).toBe(
      "EXPORT_MALFORMED",
    );
    const accounts = await sql<{ n: number }>`SELECT count(*)::int AS n FROM accounts`.execute(target);
    expect(accounts.rows[0]?.n).toBe(0);
  });
});
