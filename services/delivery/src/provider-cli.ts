// `pnpm provider <command>` (root) or `pnpm --filter @switchboard/delivery provider <command>`:
// administers the third-party provider registry in DATABASE_URL (or the embedded database in
// DATA_DIR). Commands:
//   add <id> --name "<display name>"   registers a provider and prints its token ONCE
//   revoke <id>                        refuses the provider's token from now on
//   list                               lists providers (never tokens)
import { databaseEnv, loadOrExit, parseEnv, str } from "@switchboard/config";
import { isAppError } from "@switchboard/errors";
import { createDatabase, createEmbeddedDatabase, migrateToLatest } from "@switchboard/storage";
import { addProvider, listProviderSummaries, revokeProviderById } from "./providers/provider-admin.js";

const USAGE = `usage: provider add <id> --name "<display name>" | provider revoke <id> | provider list`;

const config = loadOrExit(() => parseEnv({ ...databaseEnv, DATA_DIR: str({ default: ".data/pglite" }) }));
const [command, ...rest] = process.argv.slice(2).filter((a) => a !== "--");

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(64);
}

function nameOption(args: string[]): string {
  const i = args.indexOf("--name");
  const value = i >= 0 ? args[i + 1] : undefined;
  if (value === undefined) fail("--name is required");
  return value;
}

if (command !== "add" && command !== "revoke" && command !== "list") fail(`unknown command ${command ?? ""}`);

const db = config.DATABASE_URL
  ? createDatabase({ url: config.DATABASE_URL, poolSize: 1, applicationName: "provider-cli" })
  : await createEmbeddedDatabase({ dataDir: config.DATA_DIR });
try {
  await migrateToLatest(db);
  if (command === "add") {
    const id = rest[0];
    if (id === undefined || id.startsWith("--")) fail("add needs a provider id");
    const { provider, token } = await addProvider(db, { id, displayName: nameOption(rest) });
    process.stdout.write(
      `provider ${provider.id} ("${provider.displayName}") added.\n` +
        `token (shown once; only its SHA-256 is stored):\n${token}\n`,
    );
  } else if (command === "revoke") {
    const id = rest[0];
    if (id === undefined) fail("revoke needs a provider id");
    const p = await revokeProviderById(db, id);
    process.stdout.write(`provider ${p.id} revoked at ${p.revokedAt?.toISOString() ?? "?"}\n`);
  } else {
    const all = await listProviderSummaries(db);
    if (all.length === 0) process.stdout.write("no providers\n");
    for (const p of all) {
      const state = p.revokedAt ? `revoked ${p.revokedAt.toISOString()}` : "active";
      process.stdout.write(`${p.id}\t${p.displayName}\tcreated ${p.createdAt.toISOString()}\t${state}\n`);
    }
  }
} catch (err) {
  if (isAppError(err)) {
    process.stderr.write(`${err.reason}: ${err.message}\n`);
    process.exitCode = 1;
  } else throw err;
} finally {
  await db.destroy();
}
