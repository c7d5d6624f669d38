// `pnpm restore --in whatsapp.ndjson`: restores an export into the fresh database DATABASE_URL,
// migrating it first (the delivery tables and the exported app's gateway tables). One transaction:
// everything or nothing. See docs/interop.md.
import { fail, EXIT_USAGE, parseCommandLine } from "./cli.js";
import { restoreAppFromFile } from "./app-files.js";

const USAGE = `usage: pnpm restore --in <export file> [--database-url postgres://…]
Migrates the fresh database DATABASE_URL and restores the export into it in one transaction.`;

const { values, databaseUrl, resolvePath } = parseCommandLine(process.argv.slice(2), ["in"], USAGE);
if (values.in === undefined) {
  process.stderr.write(`--in is required\n\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}
try {
  const summary = await restoreAppFromFile(databaseUrl, resolvePath(values.in));
  process.stdout.write(`${JSON.stringify({ restored: values.in, ...summary })}\n`);
} catch (err) {
  fail(err);
}
