import { describe, expect, test } from "vitest";
import {
  cloneDatabaseName,
  clonePrefixOf,
  databaseNameOf,
  databaseUrlFor,
  quoteIdent,
  redactUrl,
  templateDatabaseName,
} from "./names.js";

describe("templateDatabaseName", () => {
  test("reduces the package name to a short identifier-safe slug", () => {
    expect(templateDatabaseName("@switchboard/Storage", "abc")).toBe("sb_tpl_switchboard_storage_abc");
    expect(templateDatabaseName("a-very-long-package-name-indeed", "abc")).toBe(
      "sb_tpl_a_very_long_package_abc",
    );
    expect(templateDatabaseName("---", "abc")).toBe("sb_tpl_pkg_abc");
  });

  test("stays within PostgreSQL's 63-byte identifier limit", () => {
    expect(templateDatabaseName("x".repeat(200)).length).toBeLessThanOrEqual(63);
  });
});

describe("cloneDatabaseName", () => {
  test("starts with the prefix teardown looks for", () => {
    const template = templateDatabaseName("storage", "0123456789");
    expect(clonePrefixOf(template)).toBe("sb_t_0123456789_");
    expect(cloneDatabaseName(template)).toMatch(/^sb_t_0123456789_[0-9a-f]{12}$/);
  });
});

describe("databaseUrlFor", () => {
  test("swaps the database and keeps credentials and parameters", () => {
    expect(databaseUrlFor("postgres://u:p@db:5432/test?sslmode=disable", "sb_t_1")).toBe(
      "postgres://u:p@db:5432/sb_t_1?sslmode=disable",
    );
    expect(databaseNameOf("postgres://u@db:5432/sb_t_1?x=1")).toBe("sb_t_1");
  });
});

describe("quoteIdent", () => {
  test("doubles embedded quotes", () => {
    expect(quoteIdent('a"b')).toBe('"a""b"');
  });
});

describe("redactUrl", () => {
  test("masks the password only", () => {
    expect(redactUrl("postgres://u:secret@db:5432/test")).toBe("postgres://u:***@db:5432/test");
    expect(redactUrl("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
  });
});
