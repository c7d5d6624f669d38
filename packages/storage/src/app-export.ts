// One app's complete state as JSON lines, and back (issue 10, separability). Table-driven: every
// table and sequence of the database needs a rule below, or the export refuses to run, so a table
// added later cannot be silently left behind. See docs/interop.md, "Separability and the breakup
// drill", for the format and how shared state (cross-app groups) splits.
import { AppError, Code } from "@switchboard/errors";
import { sql, type Kysely, type RawBuilder, type Transaction } from "kysely";
import type { Database } from "./schema.js";

/** Values of `switchboard.common.v1.App` (storage does not depend on the generated code). */
const WHATSAPP = 1;
const MESSENGER = 2;
const INSTAGRAM = 3;

/** The apps an export can split off, by name (the `--app` of `pnpm export`). */
export const EXPORTABLE_APPS: Readonly<Record<string, number>> = {
  whatsapp: WHATSAPP,
  messenger: MESSENGER,
  instagram: INSTAGRAM,
};

/** `format` of the header line. */
export const APP_EXPORT_FORMAT = "switchboard-app-export";
/** `version` of the header line; bumped on incompatible changes of the line shapes. */
export const APP_EXPORT_VERSION = 1;

/** Which rows of a table belong to an app, and which of its columns may name other apps' accounts. */
export interface TableExportRule {
  table: string;
  /** Who owns a row, in words (for docs and error messages). */
  owner: string;
  /**
   * SQL predicate over the row alias `t` selecting the app's rows. `present` holds the tables that
   * exist in the database (a predicate may consult another table only when it exists).
   */
  where: (app: number, present: ReadonlySet<string>) => RawBuilder<unknown>;
  /**
   * Columns that may hold the id of another app's account (a sender, a peer, a group's creator).
   * They are kept: they are this app's users' own view of their contacts. Nothing else of the other
   * apps is exported.
   */
  foreignRefs?: readonly string[];
  /**
   * Of `foreignRefs`, those with a foreign key to `accounts`: on import, a row whose account is not
   * in the target database is skipped (and counted as `dropped`), since PostgreSQL cannot hold it.
   */
  dropWhenAccountMissing?: readonly string[];
  /**
   * For a gateway's own table: the app of that gateway. The table belongs whole to it and appears
   * only in that app's exports (a restore creates only the exported app's gateway tables).
   */
  gatewayOf?: number;
}

/** A table deliberately not exported, with the reason. */
export interface SkippedTableRule {
  table: string;
  skip: string;
}

/** A sequence whose position belongs to one app (restored with `setval`). */
export interface SequenceExportRule {
  sequence: string;
  app: number;
}

const byApp = (app: number) => sql`t.app = ${app}`;
const wholeTable = () => sql.lit(true);

/**
 * Every exported table, in import order (referenced tables first). Adding a migration that creates
 * a table means adding a rule here (or to {@link SKIPPED_TABLES}); the export fails otherwise.
 */
export const TABLE_EXPORT_RULES: readonly TableExportRule[] = [
  { table: "accounts", owner: "the account's app (`app`)", where: byApp },
  { table: "devices", owner: "the device's account's app (`app`)", where: byApp },
  { table: "one_time_prekeys", owner: "the device's app (`app`)", where: byApp },
  { table: "kyber_prekeys", owner: "the device's app (`app`)", where: byApp },
  {
    table: "groups",
    owner:
      "every app with a member (or a pending invitee) in the group: a shared row, copied into each app's export",
    where: (app, present) =>
      present.has("group_invitations")
        ? sql`(EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = t.id AND m.app = ${app})
            OR EXISTS (SELECT 1 FROM group_invitations i WHERE i.group_id = t.id AND i.app = ${app}))`
        : sql`EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = t.id AND m.app = ${app})`,
    foreignRefs: ["creator_account_id"],
  },
  { table: "group_members", owner: "the member's app (`app`)", where: byApp },
  {
    table: "group_invitations",
    owner: "the invitee's app (`app`)",
    where: byApp,
    foreignRefs: ["inviter_account_id"],
    dropWhenAccountMissing: ["inviter_account_id"],
  },
  {
    table: "relationships",
    owner: "the owner's app (`app`)",
    where: byApp,
    foreignRefs: ["peer_account_id"],
    dropWhenAccountMissing: ["peer_account_id"],
  },
  {
    table: "queued_messages",
    owner: "the recipient's app (`app`)",
    where: byApp,
    foreignRefs: ["source_account_id"],
  },
  {
    table: "group_payloads",
    owner: "every app whose queued messages reference the payload",
    where: (app) =>
      sql`t.message_id IN (SELECT q.payload_id FROM queued_messages q WHERE q.app = ${app} AND q.payload_id IS NOT NULL)`,
  },
  { table: "send_log", owner: "the sender's app (`app`)", where: byApp },
  { table: "unidentified_access", owner: "the account's app (`app`)", where: byApp },
  {
    table: "reports",
    owner: "the reporter's app (`app`)",
    where: byApp,
    foreignRefs: ["sender_account_id"],
  },
  // The gateways' own tables, beside the delivery service's in one database: each belongs whole to its app.
  {
    table: "wa_verification_codes",
    owner: "whatsapp (gateway table)",
    where: wholeTable,
    gatewayOf: WHATSAPP,
  },
  { table: "wa_link_codes", owner: "whatsapp (gateway table)", where: wholeTable, gatewayOf: WHATSAPP },
  { table: "wa_device_tokens", owner: "whatsapp (gateway table)", where: wholeTable, gatewayOf: WHATSAPP },
  { table: "ms_tokens", owner: "messenger (gateway table)", where: wholeTable, gatewayOf: MESSENGER },
  { table: "ig_tokens", owner: "instagram (gateway table)", where: wholeTable, gatewayOf: INSTAGRAM },
  {
    table: "ig_threads",
    owner: "instagram (gateway table)",
    where: wholeTable,
    gatewayOf: INSTAGRAM,
    foreignRefs: ["peer_account_id"],
  },
  {
    table: "ig_relationships",
    owner: "instagram (gateway table)",
    where: wholeTable,
    gatewayOf: INSTAGRAM,
    foreignRefs: ["peer_account_id"],
  },
  {
    table: "ig_requests",
    owner: "instagram (gateway table)",
    where: wholeTable,
    gatewayOf: INSTAGRAM,
    foreignRefs: ["peer_account_id"],
  },
];

const MIGRATION_BOOKKEEPING = "migration bookkeeping: recreated by running the migrations before the import";

/** Tables that belong to no app. Migration tables are listed so the header can record their names. */
export const SKIPPED_TABLES: readonly SkippedTableRule[] = [
  { table: "kysely_migration", skip: MIGRATION_BOOKKEEPING },
  { table: "kysely_migration_lock", skip: MIGRATION_BOOKKEEPING },
  { table: "wa_kysely_migration", skip: MIGRATION_BOOKKEEPING },
  { table: "wa_kysely_migration_lock", skip: MIGRATION_BOOKKEEPING },
  { table: "ms_migrations", skip: MIGRATION_BOOKKEEPING },
  { table: "ms_migrations_lock", skip: MIGRATION_BOOKKEEPING },
  { table: "ig_kysely_migration", skip: MIGRATION_BOOKKEEPING },
  { table: "ig_kysely_migration_lock", skip: MIGRATION_BOOKKEEPING },
  {
    table: "server_keys",
    skip:
      "the backbone's own secrets (franking key, sealed-sender trust root): a split-off backbone generates its own, " +
      "and an export file never carries a server secret",
  },
  {
    table: "providers",
    skip: "the backbone's registry of third-party providers belongs to no app; a split-off backbone keeps its own",
  },
];

/** Sequences whose position must survive a restore (so new ids do not collide with restored ones). */
export const SEQUENCE_EXPORT_RULES: readonly SequenceExportRule[] = [
  { sequence: "ms_user_id_seq", app: MESSENGER },
];

/**
 * Migration tables whose `name` column lists applied migrations (recorded in the header), with
 * the app whose gateway they belong to (undefined: the delivery service's, needed by every app).
 */
const MIGRATION_TABLES: Readonly<Record<string, number | undefined>> = {
  kysely_migration: undefined,
  wa_kysely_migration: WHATSAPP,
  ms_migrations: MESSENGER,
  ig_kysely_migration: INSTAGRAM,
};

/** A column of an exported table as the header lists it. */
export interface ExportColumn {
  name: string;
  /** PostgreSQL type, as `format_type` prints it (`bytea`, `timestamp with time zone`, …). */
  type: string;
}

/** The first line of an export. */
export interface ExportHeader {
  format: typeof APP_EXPORT_FORMAT;
  version: number;
  app: number;
  appName: string;
  exportedAt: string;
  /** Applied migrations per bookkeeping table at export time; the target must have at least these. */
  migrations: Record<string, string[]>;
}

/** Rows written per table (and sequence positions). */
export interface ExportSummary {
  app: number;
  tables: Record<string, number>;
  sequences: Record<string, number>;
  /**
   * Export only: queued messages whose sender is an account of another app. A split-off backbone
   * cannot name their sender through the handle-based gateway APIs (it has no handle for it), so
   * drain these before splitting (docs/interop.md).
   */
  queuedFromOtherApps?: number;
}

/** What an import stored. */
export interface ImportSummary extends ExportSummary {
  /** Rows skipped per table because they reference an account that is not in the target. */
  dropped: Record<string, number>;
}

interface Relation {
  name: string;
  kind: "table" | "sequence";
}

type Db = Kysely<Database> | Transaction<Database>;

/** Tables and sequences of the current schema. */
async function listRelations(db: Db): Promise<Relation[]> {
  const { rows } = await sql<{ relname: string; relkind: string }>`
    SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S') AND NOT c.relispartition
    ORDER BY c.relname
  `.execute(db);
  return rows.map((r) => ({ name: r.relname, kind: r.relkind === "S" ? "sequence" : "table" }));
}

/**
 * Tables and sequences of the database that no export rule covers (neither exported nor skipped
 * with a reason). Empty when the rules are complete; {@link exportApp} refuses to run otherwise.
 */
export async function findRelationsWithoutExportRule(db: Db): Promise<string[]> {
  const known = new Set<string>([
    ...TABLE_EXPORT_RULES.map((r) => r.table),
    ...SKIPPED_TABLES.map((r) => r.table),
    ...SEQUENCE_EXPORT_RULES.map((r) => r.sequence),
  ]);
  return (await listRelations(db)).filter((r) => !known.has(r.name)).map((r) => `${r.kind} ${r.name}`);
}

async function listColumns(db: Db, table: string): Promise<ExportColumn[]> {
  const { rows } = await sql<ExportColumn>`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
    FROM pg_attribute a
    WHERE a.attrelid = (quote_ident(current_schema()) || '.' || quote_ident(${table}))::regclass
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
  `.execute(db);
  return rows;
}

async function primaryKeyColumns(db: Db, table: string): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    SELECT a.attname AS name
    FROM pg_index i
    JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = (quote_ident(current_schema()) || '.' || quote_ident(${table}))::regclass
      AND i.indisprimary
    ORDER BY k.ord
  `.execute(db);
  return rows.map((r) => r.name);
}

const appNameOf = (app: number): string => {
  const name = Object.entries(EXPORTABLE_APPS).find(([, value]) => value === app)?.[0];
  if (name === undefined)
    throw new AppError(
      Code.InvalidArgument,
      "UNKNOWN_APP",
      `app ${app} cannot be exported (not one of our apps)`,
    );
  return name;
};

/** PostgreSQL renders bytea in JSON as `\x<hex>`; the export carries base64 instead. */
function encodeRow(row: Record<string, unknown>, byteaColumns: readonly string[]): Record<string, unknown> {
  for (const column of byteaColumns) {
    const value = row[column];
    if (typeof value === "string" && value.startsWith("\\x"))
      row[column] = Buffer.from(value.slice(2), "hex").toString("base64");
  }
  return row;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeRow(row: Record<string, unknown>, byteaColumns: readonly string[]): Record<string, unknown> {
  const out = { ...row };
  for (const column of byteaColumns) {
    const value = out[column];
    if (typeof value !== "string") continue;
    if (!BASE64.test(value))
      throw new AppError(Code.InvalidArgument, "EXPORT_MALFORMED", `column ${column} is not base64`);
    out[column] = `\\x${Buffer.from(value, "base64").toString("hex")}`;
  }
  return out;
}

const positiveInt = (value: number | undefined, fallback: number): number =>
  value !== undefined && Number.isInteger(value) && value > 0 ? value : fallback;

/** Options of {@link exportApp}. */
export interface ExportOptions {
  /** Rows fetched per round trip (default 1,000). */
  batchSize?: number;
}

/**
 * Writes app `app`'s complete state as JSON lines to `write`, from one consistent snapshot (a
 * REPEATABLE READ, READ ONLY transaction): a header, then per table a `table` line with its
 * columns, one `row` line per row (bytea as base64) and an `end` line with the count, then the
 * sequences, then a final `done` line. Streams with a cursor; `write` may return a promise (back
 * pressure). Throws FAILED_PRECONDITION (EXPORT_RULE_MISSING) when a table or sequence of the
 * database has no export rule, and INVALID_ARGUMENT (UNKNOWN_APP) for an app that is not ours.
 */
export async function exportApp(
  db: Kysely<Database>,
  app: number,
  write: (line: string) => void | Promise<void>,
  options: ExportOptions = {},
): Promise<ExportSummary> {
  const appName = appNameOf(app);
  const batchSize = positiveInt(options.batchSize, 1_000);
  return db
    .transaction()
    .setIsolationLevel("repeatable read")
    .setAccessMode("read only")
    .execute(async (trx) => {
      // row_to_json renders bytea in the server's bytea_output format; encodeRow expects hex.
      await sql`SET LOCAL bytea_output = 'hex'`.execute(trx);
      const missing = await findRelationsWithoutExportRule(trx);
      if (missing.length > 0)
        throw new AppError(
          Code.FailedPrecondition,
          "EXPORT_RULE_MISSING",
          `no export rule for ${missing.join(", ")}: add one to TABLE_EXPORT_RULES, SKIPPED_TABLES or ` +
            `SEQUENCE_EXPORT_RULES in packages/storage/src/app-export.ts`,
        );
      const relations = await listRelations(trx);
      const present = new Set(relations.filter((r) => r.kind === "table").map((r) => r.name));
      const migrations: Record<string, string[]> = {};
      for (const [table, owner] of Object.entries(MIGRATION_TABLES)) {
        if (!present.has(table) || (owner !== undefined && owner !== app)) continue;
        const { rows } = await sql<{
          name: string;
        }>`SELECT name FROM ${sql.table(table)} ORDER BY name`.execute(trx);
        migrations[table] = rows.map((r) => r.name);
      }
      const header: ExportHeader = {
        format: APP_EXPORT_FORMAT,
        version: APP_EXPORT_VERSION,
        app,
        appName,
        exportedAt: new Date().toISOString(),
        migrations,
      };
      await write(JSON.stringify(header));

      const summary: ExportSummary = { app, tables: {}, sequences: {} };
      for (const rule of TABLE_EXPORT_RULES) {
        if (!present.has(rule.table) || (rule.gatewayOf !== undefined && rule.gatewayOf !== app)) continue;
        const columns = await listColumns(trx, rule.table);
        const bytea = columns.filter((c) => c.type === "bytea").map((c) => c.name);
        const order = await primaryKeyColumns(trx, rule.table);
        await write(JSON.stringify({ table: rule.table, columns }));
        const orderBy =
          order.length > 0 ? sql` ORDER BY ${sql.join(order.map((c) => sql.ref(`t.${c}`)))}` : sql``;
        await sql`
          DECLARE app_export_cursor NO SCROLL CURSOR FOR
          SELECT row_to_json(t) AS row FROM ${sql.table(rule.table)} AS t
          WHERE ${rule.where(app, present)}${orderBy}
        `.execute(trx);
        let count = 0;
        for (;;) {
          const { rows } = await sql<{ row: Record<string, unknown> }>`
            FETCH ${sql.raw(String(batchSize))} FROM app_export_cursor
          `.execute(trx);
          for (const { row } of rows) {
            await write(JSON.stringify({ table: rule.table, row: encodeRow(row, bytea) }));
            count++;
          }
          if (rows.length < batchSize) break;
        }
        await sql`CLOSE app_export_cursor`.execute(trx);
        await write(JSON.stringify({ end: rule.table, rows: count }));
        summary.tables[rule.table] = count;
      }
      for (const rule of SEQUENCE_EXPORT_RULES) {
        if (rule.app !== app || !relations.some((r) => r.kind === "sequence" && r.name === rule.sequence))
          continue;
        const { rows } = await sql<{ last_value: number | string; is_called: boolean }>`
          SELECT last_value, is_called FROM ${sql.table(rule.sequence)}
        `.execute(trx);
        const position = rows[0];
        if (!position) continue;
        const lastValue = Number(position.last_value);
        await write(JSON.stringify({ sequence: rule.sequence, lastValue, isCalled: position.is_called }));
        summary.sequences[rule.sequence] = lastValue;
      }
      if (present.has("queued_messages")) {
        const { rows } = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM queued_messages
          WHERE app = ${app} AND source_account_id IS NOT NULL AND source_app <> ${app}
        `.execute(trx);
        summary.queuedFromOtherApps = rows[0]?.n ?? 0;
      }
      await write(JSON.stringify({ done: true, tables: summary.tables }));
      return summary;
    });
}

/** Options of {@link importApp}. */
export interface ImportOptions {
  /** Rows inserted per statement (default 500). */
  batchSize?: number;
  /** Refuse an export of another app (INVALID_ARGUMENT, EXPORT_APP_MISMATCH). */
  expectApp?: number;
}

const invalid = (reason: string, message: string) => new AppError(Code.InvalidArgument, reason, message);

function parseLine(line: string, lineNo: number): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value as Record<string, unknown>;
  } catch (err) {
    throw new AppError(Code.InvalidArgument, "EXPORT_MALFORMED", `line ${lineNo} is not a JSON object`, {
      cause: err,
    });
  }
}

/**
 * Restores an export written by {@link exportApp} into `db`, in ONE transaction: either every row
 * is stored or none is. The target must already be migrated (at least to the export's migrations)
 * and must hold no rows in the exported tables. Rows whose foreign key names an account missing
 * from the target (a relationship with another app's user) are skipped and counted in `dropped`.
 * Throws INVALID_ARGUMENT (EXPORT_MALFORMED, EXPORT_TRUNCATED, EXPORT_APP_MISMATCH,
 * EXPORT_VERSION_UNSUPPORTED) or FAILED_PRECONDITION (IMPORT_SCHEMA_BEHIND, IMPORT_TABLE_MISSING,
 * IMPORT_TARGET_NOT_EMPTY).
 */
export async function importApp(
  db: Kysely<Database>,
  lines: AsyncIterable<string>,
  options: ImportOptions = {},
): Promise<ImportSummary> {
  const batchSize = positiveInt(options.batchSize, 500);
  const rules = new Map(TABLE_EXPORT_RULES.map((r) => [r.table, r]));
  return db.transaction().execute(async (trx) => {
    const relations = await listRelations(trx);
    const present = new Set(relations.filter((r) => r.kind === "table").map((r) => r.name));
    let header: ExportHeader | undefined;
    let summary: ImportSummary | undefined;
    let current: { table: string; columns: ExportColumn[]; bytea: string[]; read: number } | undefined;
    let pending: Record<string, unknown>[] = [];
    let done = false;
    let lineNo = 0;

    const flush = async (): Promise<void> => {
      if (!current || pending.length === 0 || !summary) return;
      const { table, columns } = current;
      const names = columns.map((c) => sql.ref(c.name));
      const keep = (rules.get(table)?.dropWhenAccountMissing ?? []).map(
        (c) =>
          sql`(r.${sql.ref(c)} IS NULL OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = r.${sql.ref(c)}))`,
      );
      const where = keep.length > 0 ? sql` WHERE ${sql.join(keep, sql` AND `)}` : sql``;
      const result = await sql`
        INSERT INTO ${sql.table(table)} (${sql.join(names)})
        SELECT ${sql.join(columns.map((c) => sql`r.${sql.ref(c.name)}`))}
        FROM json_populate_recordset(NULL::${sql.table(table)}, ${JSON.stringify(pending)}::json) AS r${where}
      `.execute(trx);
      const inserted = Number(result.numAffectedRows ?? 0);
      summary.tables[table] = (summary.tables[table] ?? 0) + inserted;
      if (inserted < pending.length)
        summary.dropped[table] = (summary.dropped[table] ?? 0) + pending.length - inserted;
      pending = [];
    };

    for await (const raw of lines) {
      lineNo++;
      if (raw.trim() === "") continue;
      if (done) throw invalid("EXPORT_MALFORMED", `line ${lineNo} follows the final "done" line`);
      const line = parseLine(raw, lineNo);
      if (!header) {
        header = await checkHeader(trx, line, present, options);
        summary = { app: header.app, tables: {}, sequences: {}, dropped: {} };
        continue;
      }
      if (!summary) break;
      if (typeof line.table === "string" && Array.isArray(line.columns)) {
        if (current)
          throw invalid(
            "EXPORT_MALFORMED",
            `line ${lineNo}: table ${line.table} starts inside ${current.table}`,
          );
        current = await startTable(
          trx,
          summary.app,
          line.table,
          line.columns as ExportColumn[],
          rules,
          present,
        );
        summary.tables[current.table] = 0;
      } else if (typeof line.table === "string" && typeof line.row === "object" && line.row !== null) {
        if (current?.table !== line.table)
          throw invalid(
            "EXPORT_MALFORMED",
            `line ${lineNo}: a row of ${line.table} outside its table section`,
          );
        pending.push(decodeRow(line.row as Record<string, unknown>, current.bytea));
        current.read++;
        if (pending.length >= batchSize) await flush();
      } else if (typeof line.end === "string") {
        if (current?.table !== line.end)
          throw invalid("EXPORT_MALFORMED", `line ${lineNo}: unexpected end of ${line.end}`);
        await flush();
        if (line.rows !== current.read)
          throw invalid(
            "EXPORT_TRUNCATED",
            `table ${current.table}: ${current.read} rows read, the export says ${String(line.rows)}`,
          );
        current = undefined;
      } else if (typeof line.sequence === "string" && typeof line.lastValue === "number") {
        if (!SEQUENCE_EXPORT_RULES.some((r) => r.sequence === line.sequence && r.app === header?.app))
          throw invalid(
            "EXPORT_MALFORMED",
            `line ${lineNo}: sequence ${line.sequence} has no rule for this app`,
          );
        if (!relations.some((r) => r.kind === "sequence" && r.name === line.sequence))
          throw new AppError(
            Code.FailedPrecondition,
            "IMPORT_TABLE_MISSING",
            `sequence ${line.sequence} does not exist: run the migrations first`,
          );
        await sql`SELECT setval(${line.sequence}::regclass, ${line.lastValue}::bigint, ${line.isCalled === true})`.execute(
          trx,
        );
        summary.sequences[line.sequence] = line.lastValue;
      } else if (line.done === true) {
        if (current) throw invalid("EXPORT_TRUNCATED", `the export ends inside table ${current.table}`);
        done = true;
      } else {
        throw invalid(
          "EXPORT_MALFORMED",
          `line ${lineNo} is not a header, table, row, end, sequence or done line`,
        );
      }
    }
    if (!header || !summary) throw invalid("EXPORT_MALFORMED", "the export is empty");
    if (!done)
      throw invalid("EXPORT_TRUNCATED", `the export ends after line ${lineNo} without its final "done" line`);
    return summary;
  });
}

async function checkHeader(
  trx: Transaction<Database>,
  line: Record<string, unknown>,
  present: ReadonlySet<string>,
  options: ImportOptions,
): Promise<ExportHeader> {
  if (line.format !== APP_EXPORT_FORMAT)
    throw invalid("EXPORT_MALFORMED", `the first line is not a ${APP_EXPORT_FORMAT} header`);
  if (line.version !== APP_EXPORT_VERSION)
    throw invalid(
      "EXPORT_VERSION_UNSUPPORTED",
      `export version ${String(line.version)} is not supported (expected ${APP_EXPORT_VERSION})`,
    );
  const header = line as unknown as ExportHeader;
  if (typeof header.app !== "number" || !Object.values(EXPORTABLE_APPS).includes(header.app))
    throw invalid("EXPORT_MALFORMED", `the header names no app of ours (${String(header.app)})`);
  if (options.expectApp !== undefined && options.expectApp !== header.app)
    throw invalid(
      "EXPORT_APP_MISMATCH",
      `the export is of ${header.appName}, not of app ${options.expectApp}`,
    );
  for (const [table, names] of Object.entries(header.migrations ?? {})) {
    if (!(table in MIGRATION_TABLES))
      throw invalid("EXPORT_MALFORMED", `unknown migration table ${table} in the header`);
    const applied = present.has(table)
      ? new Set(
          (await sql<{ name: string }>`SELECT name FROM ${sql.table(table)}`.execute(trx)).rows.map(
            (r) => r.name,
          ),
        )
      : new Set<string>();
    const behind = names.filter((n) => !applied.has(n));
    if (behind.length > 0)
      throw new AppError(
        Code.FailedPrecondition,
        "IMPORT_SCHEMA_BEHIND",
        `the target lacks migrations ${behind.join(", ")} (${table}): migrate it first`,
      );
  }
  return header;
}

async function startTable(
  trx: Transaction<Database>,
  app: number,
  table: string,
  columns: ExportColumn[],
  rules: ReadonlyMap<string, TableExportRule>,
  present: ReadonlySet<string>,
): Promise<{ table: string; columns: ExportColumn[]; bytea: string[]; read: number }> {
  const rule = rules.get(table);
  if (!rule) throw invalid("EXPORT_MALFORMED", `table ${table} has no export rule`);
  if (rule.gatewayOf !== undefined && rule.gatewayOf !== app)
    throw invalid("EXPORT_MALFORMED", `table ${table} belongs to another app's gateway`);
  if (!present.has(table))
    throw new AppError(
      Code.FailedPrecondition,
      "IMPORT_TABLE_MISSING",
      `table ${table} does not exist: run the migrations first`,
    );
  const target = new Map((await listColumns(trx, table)).map((c) => [c.name, c.type]));
  for (const c of columns) {
    if (typeof c?.name !== "string" || typeof c.type !== "string")
      throw invalid("EXPORT_MALFORMED", `table ${table}: malformed column list`);
    if (target.get(c.name) !== c.type)
      throw new AppError(
        Code.FailedPrecondition,
        "IMPORT_SCHEMA_BEHIND",
        `table ${table}: column ${c.name} (${c.type}) ${target.has(c.name) ? `is ${target.get(c.name)} in the target` : "does not exist in the target"}`,
      );
  }
  const { rows } = await sql<{
    any: boolean;
  }>`SELECT EXISTS (SELECT 1 FROM ${sql.table(table)}) AS any`.execute(trx);
  if (rows[0]?.any)
    throw new AppError(
      Code.FailedPrecondition,
      "IMPORT_TARGET_NOT_EMPTY",
      `table ${table} of the target already has rows: restore into a fresh database`,
    );
  return { table, columns, bytea: columns.filter((c) => c.type === "bytea").map((c) => c.name), read: 0 };
}
