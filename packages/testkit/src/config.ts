/** Where already-running servers are, when the caller named them; `undefined` means "start a container". */
export interface TestEnvironment {
  /** `DATABASE_URL`: a PostgreSQL role allowed to `CREATE DATABASE`. */
  readonly databaseUrl: string | undefined;
  /** `REDIS_URL`: a Redis server the tests may write prefixed keys to. */
  readonly redisUrl: string | undefined;
}

/** The environment variables the harness reads, by the names CI and `docker-compose.yml` use. */
export type TestEnvironmentVariable = "DATABASE_URL" | "REDIS_URL";

/**
 * Read `DATABASE_URL` and `REDIS_URL` (an empty value counts as unset). This is the only place the
 * harness touches the environment; `createGlobalSetup` calls it once per run.
 */
export function readTestEnvironment(env: NodeJS.ProcessEnv = process.env): TestEnvironment {
  return { databaseUrl: nonEmpty(env.DATABASE_URL), redisUrl: nonEmpty(env.REDIS_URL) };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
