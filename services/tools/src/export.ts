// `pnpm export --app whatsapp --out whatsapp.ndjson`: writes one app's complete state (and nothing
// of the other apps) from DATABASE_URL to a JSON-lines file. See docs/interop.md.
import { EXPORTABLE_APPS } from "@switchboard/storage";
import { appNumber, exportAppToFile, exportPath, type AppName } from "./app-files.js";
import { EXIT_USAGE, fail, parseCommandLine } from "./cli.js";

const USAGE = `usage: pnpm export --app <${Object.keys(EXPORTABLE_APPS).join("|")}> --out <file or directory> [--database-url postgres://…]
Writes the app's accounts, devices (credentials hashed, as stored), keys, queued messages and the
group payloads they reference, send log, groups as the app sees them, relationships, reports and
the app's gateway tables, from one consistent snapshot. DATABASE_URL names the source database.`;

const { values, databaseUrl, resolvePath } = parseCommandLine(process.argv.slice(2), ["app", "out"], USAGE);
if (values.app === undefined || values.out === undefined) {
  process.stderr.write(`--app and --out are required\n\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}
try {
  appNumber(values.app);
  const app = values.app as AppName;
  const path = exportPath(resolvePath(values.out), app);
  const summary = await exportAppToFile(databaseUrl, app, path);
  process.stdout.write(`${JSON.stringify({ exported: app, file: path, ...summary })}\n`);
} catch (err) {
  fail(err);
}
