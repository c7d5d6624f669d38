import { randomBytes } from "node:crypto";

const TEMPLATE_PREFIX = "sb_tpl_";
const CLONE_PREFIX = "sb_t_";
const MAX_SLUG_CHARS = 20;

/** A random lower-case hex string of `bytes * 2` characters. */
export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

/**
 * A fresh template database name, `sb_tpl_<slug>_<runId>`: the slug is `name` reduced to
 * `[a-z0-9_]` (at most 20 characters) so the whole stays well under PostgreSQL's 63-byte limit.
 */
export function templateDatabaseName(name: string, runId: string = randomHex(5)): string {
  const slug =
    name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "_")
      .slice(0, MAX_SLUG_CHARS)
      .replace(/^_+|_+$/g, "") || "pkg";
  return `${TEMPLATE_PREFIX}${slug}_${runId}`;
}

/** The prefix every clone of `templateName` carries (`sb_t_<runId>_`), so teardown can find leftovers. */
export function clonePrefixOf(templateName: string): string {
  return `${CLONE_PREFIX}${templateName.slice(templateName.lastIndexOf("_") + 1)}_`;
}

/** A fresh clone name for `templateName`: `sb_t_<runId>_<random>`. */
export function cloneDatabaseName(templateName: string): string {
  return `${clonePrefixOf(templateName)}${randomHex(6)}`;
}

/** Quote an SQL identifier (database names cannot be bound as parameters). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `url` pointing at database `name` instead, keeping credentials, host and query parameters. */
export function databaseUrlFor(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.href;
}

/** The database a connection URL names (its path), e.g. `test` for `postgres://h:5432/test`. */
export function databaseNameOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ""));
}

/** `url` with any password masked, safe for error messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.href;
  } catch {
    return "<unparseable URL>";
  }
}
