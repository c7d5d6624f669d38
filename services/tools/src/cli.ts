// What `pnpm export` and `pnpm restore` share: arguments, the database URL and error output.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadOrExit } from "@switchboard/config";
import { isAppError } from "@switchboard/errors";
import { loadConfig } from "./config.js";

/** EX_USAGE from sysexits.h: bad command-line arguments. */
export const EXIT_USAGE = 64;

/** Parses `argv` with `names` (string options) plus `--database-url` and `--help`; exits on bad usage. */
export function parseCommandLine(
  argv: string[],
  names: readonly string[],
  usage: string,
): { values: Record<string, string | undefined>; databaseUrl: string; resolvePath: (p: string) => string } {
  const options: Record<string, { type: "string" | "boolean" }> = { "database-url": { type: "string" } };
  for (const name of names) options[name] = { type: "string" };
  options.help = { type: "boolean" };
  let values: Record<string, string | boolean | undefined>;
  try {
    // pnpm passes a literal "--" through when the caller wrote `pnpm export -- --app …`.
    values = parseArgs({ args: argv.filter((a) => a !== "--"), options, strict: true }).values;
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${usage}\n`);
    process.exit(EXIT_USAGE);
  }
  if (values.help === true) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const config = loadOrExit(() => loadConfig());
  const strings: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(values)) if (typeof value === "string") strings[key] = value;
  const databaseUrl = strings["database-url"] ?? config.DATABASE_URL;
  if (databaseUrl === undefined) {
    process.stderr.write(`DATABASE_URL (or --database-url) is required\n\n${usage}\n`);
    process.exit(EXIT_USAGE);
  }
  const base = config.INIT_CWD ?? process.cwd();
  return { values: strings, databaseUrl, resolvePath: (p) => resolve(base, p) };
}

/** Prints a failure (with its reason for our own errors) and exits non-zero. */
export function fail(err: unknown): never {
  if (isAppError(err)) process.stderr.write(`error ${err.reason}: ${err.message}\n`);
  else process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
