import { describe, expect, expectTypeOf, test } from "vitest";
import {
  ConfigError,
  bool,
  databaseEnv,
  enumOf,
  int,
  logEnv,
  parseEnv,
  port,
  redisEnv,
  secret,
  str,
  url,
} from "./index.js";

/** Runs `fn` and returns the ConfigError it throws. */
function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("parseEnv", () => {
  test("returns a frozen object typed from the spec", () => {
    const config = parseEnv(
      {
        GRPC_PORT: port(50051),
        BATCH_MS: int({ min: 1, default: 25 }),
        NAME: str(),
        NICK: str({ optional: true }),
        UPSTREAM: url({ optional: true }),
        DEBUG: bool({ default: false }),
        MODE: enumOf(["a", "b"], { default: "a" }),
        API_KEY: secret(),
      },
      { NAME: "delivery", API_KEY: "k", BATCH_MS: "5" },
    );
    expect(config).toEqual({
      GRPC_PORT: 50051,
      BATCH_MS: 5,
      NAME: "delivery",
      NICK: undefined,
      UPSTREAM: undefined,
      DEBUG: false,
      MODE: "a",
      API_KEY: "k",
    });
    expect(Object.isFrozen(config)).toBe(true);
    expectTypeOf(config).toEqualTypeOf<{
      readonly GRPC_PORT: number;
      readonly BATCH_MS: number;
      readonly NAME: string;
      readonly NICK: string | undefined;
      readonly UPSTREAM: string | undefined;
      readonly DEBUG: boolean;
      readonly MODE: "a" | "b";
      readonly API_KEY: string;
    }>();
  });

  test("treats an empty value as unset", () => {
    expect(parseEnv({ PORT: port(8080), NICK: str({ optional: true }) }, { PORT: "", NICK: "" })).toEqual({
      PORT: 8080,
      NICK: undefined,
    });
  });

  test("reports every missing and invalid variable in one ConfigError", () => {
    const err = configErrorOf(() =>
      parseEnv(
        { GRPC_PORT: port(), NAME: str(), DEBUG: bool(), OK: str() },
        { GRPC_PORT: "abc", DEBUG: "maybe", OK: "x" },
      ),
    );
    expect(err.problems).toEqual([
      'GRPC_PORT: expected an integer 0..65535, got "abc"',
      "NAME: required but not set",
      'DEBUG: expected one of true, false, 1, 0, yes, no, got "maybe"',
    ]);
    expect(err.message).toBe(err.problems.join("\n"));
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("ConfigError");
  });

  test("never puts a secret value in its problems", () => {
    const err = configErrorOf(() =>
      parseEnv({ JWT_SECRET: secret(), PORT: port() }, { JWT_SECRET: "hunter2", PORT: "x" }),
    );
    expect(err.message).not.toContain("hunter2");
    expect(configErrorOf(() => parseEnv({ JWT_SECRET: secret() }, {})).problems).toEqual([
      "JWT_SECRET: required but not set",
    ]);
  });
});

describe("env fragments", () => {
  test("apply their defaults to an empty environment", () => {
    const config = parseEnv({ ...databaseEnv, ...redisEnv, ...logEnv }, {});
    expect(config).toEqual({
      DATABASE_URL: undefined,
      DATABASE_POOL_SIZE: 10,
      REDIS_URL: undefined,
      REDIS_CLUSTER_NODES: undefined,
      LOG_LEVEL: "info",
      LOG_PRETTY: false,
    });
    expectTypeOf(config.LOG_LEVEL).toEqualTypeOf<
      "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent"
    >();
    expectTypeOf(config.DATABASE_URL).toEqualTypeOf<string | undefined>();
  });

  test("accept their documented protocols and reject others", () => {
    const env = {
      DATABASE_URL: "postgresql://app@db/app",
      REDIS_URL: "rediss://cache:6380",
      LOG_PRETTY: "yes",
    };
    expect(parseEnv({ ...databaseEnv, ...redisEnv, ...logEnv }, env)).toMatchObject({
      ...env,
      LOG_PRETTY: true,
    });
    const err = configErrorOf(() =>
      parseEnv(
        { ...databaseEnv, ...redisEnv, ...logEnv },
        { DATABASE_URL: "redis://db", REDIS_URL: "postgres://cache", LOG_LEVEL: "loud" },
      ),
    );
    expect(err.problems).toEqual([
      'DATABASE_URL: expected a URL with protocol postgres: or postgresql:, got "redis://db"',
      'REDIS_URL: expected a URL with protocol redis: or rediss:, got "postgres://cache"',
      'LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"',
    ]);
  });
});
