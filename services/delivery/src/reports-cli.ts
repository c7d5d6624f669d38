// `pnpm reports <command>` (root) or `pnpm --filter @switchboard/delivery reports <command>`:
// the moderators' view of abuse reports in DATABASE_URL (or the embedded database in DATA_DIR),
// like `pnpm provider`. Whoever can run it can read the database: it needs no MODERATOR_TOKEN.
// Commands:
//   list [--status open|resolved|all] [--sender <account id>] [--limit N] [--page <token>]
//   show <report id>                   one report with its revealed plaintext
//   resolve <report id> --decision dismissed|actioned [--note "<text>"] [--by <moderator>]
//   summary <account id>               reports, open reports and distinct reporters of an account
import { userInfo } from "node:os";
import { fromBinary } from "@bufbuild/protobuf";
import { databaseEnv, loadOrExit, parseEnv, str } from "@switchboard/config";
import { isAppError } from "@switchboard/errors";
import { App, content, ReportDecision, ReportStatus } from "@switchboard/proto";
import {
  createDatabase,
  createEmbeddedDatabase,
  migrateToLatest,
  type ModeratedReportRow,
} from "@switchboard/storage";
import {
  decisionName,
  getReport,
  listReports,
  resolveReport,
  summarizeReports,
} from "./moderation/report-moderation.js";

const USAGE = `usage: reports list [--status open|resolved|all] [--sender <account id>] [--limit N] [--page <token>]
       reports show <report id>
       reports resolve <report id> --decision dismissed|actioned [--note "<text>"] [--by <moderator>]
       reports summary <account id>`;

const config = loadOrExit(() => parseEnv({ ...databaseEnv, DATA_DIR: str({ default: ".data/pglite" }) }));
const [command, ...rest] = process.argv.slice(2).filter((a) => a !== "--");

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(64);
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith("--")) fail(`${name} needs a value`);
  return value;
}

function positional(args: string[], what: string): string {
  const value = args[0];
  if (value === undefined || value.startsWith("--")) fail(`${command ?? ""} needs ${what}`);
  return value;
}

const STATUSES: Record<string, ReportStatus> = {
  all: ReportStatus.UNSPECIFIED,
  open: ReportStatus.OPEN,
  resolved: ReportStatus.RESOLVED,
};
const DECISIONS: Record<string, ReportDecision> = {
  dismissed: ReportDecision.DISMISSED,
  actioned: ReportDecision.ACTIONED,
};

const appName = (app: number) => (App[app] ?? String(app)).toLowerCase();
const iso = (d: Date | null) => d?.toISOString() ?? "-";

/** The reported plaintext as a moderator reads it: a DataMessage's text when it is one. */
function describePlaintext(plaintext: Uint8Array): string {
  try {
    const m = fromBinary(content.DataMessageSchema, plaintext);
    if (m.text !== "" || m.reaction) {
      const parts = [`text: ${JSON.stringify(m.text)}`];
      if (m.reaction) parts.push(`reaction: ${JSON.stringify(m.reaction.emoji)}`);
      if (m.group) parts.push(`group: ${m.group.groupId}`);
      if (m.timestampMs !== 0n) parts.push(`sent: ${new Date(Number(m.timestampMs)).toISOString()}`);
      return parts.join("\n  ");
    }
  } catch {
    // Not a DataMessage: shown as bytes below.
  }
  return `not a DataMessage; as UTF-8: ${JSON.stringify(Buffer.from(plaintext).toString("utf8"))}`;
}

function line(r: ModeratedReportRow): string {
  return [
    r.id,
    iso(r.created_at),
    decisionName(r.decision),
    `sender ${r.sender_account_id}.${r.sender_device_id}`,
    `reporter ${r.reporter_account_id}.${r.reporter_device_id} (${appName(r.app)})`,
    JSON.stringify(r.reason),
  ].join("\t");
}

function details(r: ModeratedReportRow): string {
  const out = [
    `report     ${r.id}`,
    `reported   ${iso(r.created_at)}`,
    `reason     ${JSON.stringify(r.reason)}`,
    `reporter   ${r.reporter_account_id}.${r.reporter_device_id} (${appName(r.app)})`,
    `sender     ${r.sender_account_id}.${r.sender_device_id}${r.sealed_sender ? " (sealed sender: from its certificate)" : ""}`,
    `message    ${r.message_id}, sent ${new Date(r.server_timestamp_ms).toISOString()}`,
    `plaintext  ${r.plaintext.byteLength} bytes, base64 ${Buffer.from(r.plaintext).toString("base64")}`,
    `  ${describePlaintext(r.plaintext)}`,
    `status     ${decisionName(r.decision)}`,
  ];
  if (r.resolved_at)
    out.push(
      `resolved   ${iso(r.resolved_at)} by ${r.resolved_by ?? "?"}`,
      `note       ${JSON.stringify(r.resolution_note ?? "")}`,
    );
  return `${out.join("\n")}\n`;
}

if (command !== "list" && command !== "show" && command !== "resolve" && command !== "summary")
  fail(`unknown command ${command ?? ""}`);

// Parse every argument before opening the database.
const statusArg = option(rest, "--status") ?? "all";
const status = STATUSES[statusArg];
if (command === "list" && status === undefined) fail(`--status must be open, resolved or all`);
const limitArg = option(rest, "--limit");
const limit = limitArg === undefined ? 0 : Number(limitArg);
if (!Number.isInteger(limit) || limit < 0) fail("--limit must be a positive integer");
const decisionArg = option(rest, "--decision");
const decision = decisionArg === undefined ? undefined : DECISIONS[decisionArg];
if (command === "resolve" && decision === undefined) fail("--decision must be dismissed or actioned");

const db = config.DATABASE_URL
  ? createDatabase({ url: config.DATABASE_URL, poolSize: 1, applicationName: "reports-cli" })
  : await createEmbeddedDatabase({ dataDir: config.DATA_DIR });
try {
  await migrateToLatest(db);
  if (command === "list") {
    const page = await listReports(db, {
      status: status ?? ReportStatus.UNSPECIFIED,
      senderAccountId: option(rest, "--sender") ?? "",
      pageSize: limit,
      pageToken: option(rest, "--page") ?? "",
    });
    if (page.reports.length === 0) process.stdout.write("no reports\n");
    for (const r of page.reports) process.stdout.write(`${line(r)}\n`);
    if (page.nextPageToken !== "") process.stdout.write(`more: --page ${page.nextPageToken}\n`);
  } else if (command === "show") {
    process.stdout.write(details(await getReport(db, positional(rest, "a report id"))));
  } else if (command === "resolve") {
    const r = await resolveReport(db, {
      reportId: positional(rest, "a report id"),
      decision: decision ?? ReportDecision.UNSPECIFIED,
      note: option(rest, "--note") ?? "",
      moderator: option(rest, "--by") ?? userInfo().username,
    });
    process.stdout.write(
      r.alreadyResolved
        ? `report ${r.report.id} was already resolved ${decisionName(r.report.decision)} by ${r.report.resolved_by ?? "?"} at ${iso(r.report.resolved_at)}\n`
        : `report ${r.report.id} resolved ${decisionName(r.report.decision)} by ${r.report.resolved_by ?? "?"} at ${iso(r.report.resolved_at)}\n`,
    );
  } else {
    const s = await summarizeReports(db, positional(rest, "an account id"));
    process.stdout.write(
      `account ${s.senderAccountId}: ${s.reports} reports (${s.open} open, ${s.actioned} actioned) ` +
        `from ${s.distinctReporters} distinct reporters; first ${iso(s.firstAt)}, last ${iso(s.lastAt)}\n`,
    );
  }
} catch (err) {
  if (isAppError(err)) {
    process.stderr.write(`${err.reason}: ${err.message}\n`);
    process.exitCode = 1;
  } else throw err;
} finally {
  await db.destroy();
}
