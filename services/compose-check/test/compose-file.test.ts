import { describe, expect, test } from "vitest";
import { dependenciesOf, environmentOf, healthcheckCommand, interpolate } from "./compose-file.js";

describe("interpolate", () => {
  const env = { A: "alpha", EMPTY: "" };

  test("substitutes ${VAR} and $VAR, and unset variables as empty", () => {
    expect(interpolate("x=${A},y=$A,z=${NOPE}", env)).toBe("x=alpha,y=alpha,z=");
  });

  test("applies :- defaults to unset and empty variables, - defaults to unset ones only", () => {
    expect(interpolate("${NOPE:-d} ${EMPTY:-d} ${A:-d}", env)).toBe("d d alpha");
    expect(interpolate("${NOPE-d} ${EMPTY-d}", env)).toBe("d ");
    expect(interpolate("${NOPE:-}", env)).toBe("");
  });

  test("throws the message of a missing required variable", () => {
    expect(interpolate("${A:?set A}", env)).toBe("alpha");
    expect(() => interpolate("${EMPTY:?set EMPTY in .env (see .env.example)}", env)).toThrow(
      "required variable EMPTY is missing: set EMPTY in .env (see .env.example)",
    );
    expect(interpolate("${EMPTY?set EMPTY}", env)).toBe("");
    expect(() => interpolate("${NOPE?set NOPE}", env)).toThrow("set NOPE");
  });

  test("keeps $$ as a literal dollar", () => {
    expect(interpolate("$$A and $${A}", env)).toBe("$A and ${A}");
  });
});

describe("service fields", () => {
  test("environment values become interpolated strings", () => {
    expect(environmentOf({ environment: { N: 5, B: true, S: "${A:-x}", U: null } }, {})).toEqual({
      N: "5",
      B: "true",
      S: "x",
    });
  });

  test("depends_on in list and map form", () => {
    expect(dependenciesOf({ depends_on: ["a"] })).toEqual({ a: "service_started" });
    expect(dependenciesOf({ depends_on: { a: { condition: "service_healthy" }, b: {} } })).toEqual({
      a: "service_healthy",
      b: "service_started",
    });
  });

  test("healthcheck commands in CMD form only", () => {
    expect(healthcheckCommand({ healthcheck: { test: ["CMD", "redis-cli", "ping"] } })).toEqual([
      "redis-cli",
      "ping",
    ]);
    expect(healthcheckCommand({ healthcheck: { test: ["CMD-SHELL", "pg_isready"] } })).toBeUndefined();
    expect(healthcheckCommand({})).toBeUndefined();
  });
});
