import { Redis } from "ioredis";
import type { TestProject } from "vitest/node";
import { readTestEnvironment, type TestEnvironment, type TestEnvironmentVariable } from "./config.js";
import { clonePrefixOf, databaseUrlFor, redactUrl, templateDatabaseName } from "./names.js";
import {
  createDatabase,
  disallowConnections,
  dropDatabase,
  findDatabases,
  terminateConnections,
} from "./postgres-admin.js";
import type { ProvidedKey } from "./provided-context.js";

// For migrate functions written in the globalSetup file (which cannot import the main entry point).
export { withDatabase } from "./kysely.js";
export type { TestEnvironmentVariable } from "./config.js";

/** The image testcontainers starts when `DATABASE_URL` is unset. */
export const POSTGRES_IMAGE = "postgres:15-alpine";
/** The image testcontainers starts when `REDIS_URL` is unset. */
export const REDIS_IMAGE = "redis:7-alpine";

const REDIS_CONNECT_TIMEOUT_MS = 5_000;

/** What a package's `test/global-setup.ts` passes to `createGlobalSetup`. */
export interface GlobalSetupOptions {
  /** Short package name, used in the template database name (`sb_tpl_<name>_<random>`). */
  name: string;
  /**
   * Bring the empty database at `databaseUrl` to the latest schema. It must close every connection
   * it opened before resolving: PostgreSQL cannot copy a database that has sessions.
   */
  migrate: (databaseUrl: string) => Promise<void>;
}

/** A vitest `globalSetup` function: runs once per run and returns its teardown. */
export type GlobalSetup = (project: TestProject) => Promise<() => Promise<void>>;

/**
 * Build the vitest `globalSetup` for a package's integration tests. It uses the servers named by
 * `DATABASE_URL`/`REDIS_URL`, or starts containers with testcontainers, and fails fast with
 * `missingEnvironmentMessage` when neither is possible. It then creates and migrates a uniquely
 * named template database and provides `postgresTemplateUrl`, `postgresAdminUrl` and `redisUrl`.
 * Teardown drops the template and any clone left behind, and stops the containers it started.
 */
export function createGlobalSetup(options: GlobalSetupOptions): GlobalSetup {
  return async (project) => {
    const cleanups: Array<() => Promise<void>> = [];
    try {
      const { adminUrl, redisUrl } = await findServers(readTestEnvironment(), cleanups);
      await checkRedis(redisUrl);

      const templateName = templateDatabaseName(options.name);
      const templateUrl = databaseUrlFor(adminUrl, templateName);
      cleanups.push(() => dropTemplateAndClones(adminUrl, templateName));
      await createTemplate(adminUrl, templateName, options.migrate);

      // A Record over ProvidedKey: the compiler checks that every declared key is provided.
      const provided: Record<ProvidedKey, string> = {
        postgresTemplateUrl: templateUrl,
        postgresAdminUrl: adminUrl,
        redisUrl,
      };
      for (const key of Object.keys(provided) as ProvidedKey[]) project.provide(key, provided[key]);
      return () => runCleanups(cleanups);
    } catch (err) {
      // The setup failure is the error worth reporting; a cleanup failure on top would hide it.
      await runCleanups(cleanups).catch(() => undefined);
      throw err;
    }
  };
}

/**
 * The error text for a run that has neither `DATABASE_URL`/`REDIS_URL` nor a container runtime:
 * what is missing, and how to point the tests at running servers instead.
 */
export function missingEnvironmentMessage(
  missing: readonly TestEnvironmentVariable[],
  runtimeError?: unknown,
): string {
  const why = runtimeError === undefined ? "" : ` (${errorMessage(runtimeError)})`;
  return [
    `@switchboard/testkit: integration tests need PostgreSQL and Redis, but ${missing.join(" and ")} ` +
      `${missing.length === 1 ? "is" : "are"} not set and testcontainers found no container runtime${why}.`,
    "Point the tests at running servers, for example:",
    "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 pnpm test",
    "The DATABASE_URL role needs CREATEDB: each run creates, and drops, its own sb_tpl_*/sb_t_* databases.",
    `Or start a Docker-compatible engine so testcontainers can run ${POSTGRES_IMAGE} and ${REDIS_IMAGE}.`,
  ].join("\n");
}

async function findServers(
  env: TestEnvironment,
  cleanups: Array<() => Promise<void>>,
): Promise<{ adminUrl: string; redisUrl: string }> {
  const missing: TestEnvironmentVariable[] = [];
  if (env.databaseUrl === undefined) missing.push("DATABASE_URL");
  if (env.redisUrl === undefined) missing.push("REDIS_URL");
  if (missing.length > 0) await requireContainerRuntime(missing);

  // allSettled, not all: a container that did start must have registered its cleanup before we throw.
  const [postgres, redis] = await Promise.allSettled([
    env.databaseUrl ?? startPostgresContainer(cleanups),
    env.redisUrl ?? startRedisContainer(cleanups),
  ]);
  if (postgres.status === "rejected") throw postgres.reason;
  if (redis.status === "rejected") throw redis.reason;
  return { adminUrl: postgres.value, redisUrl: redis.value };
}

async function requireContainerRuntime(missing: readonly TestEnvironmentVariable[]): Promise<void> {
  // Imported lazily: test workers load this module through the package index and never need it.
  const { getContainerRuntimeClient } = await import("testcontainers");
  try {
    await getContainerRuntimeClient();
  } catch (err) {
    throw new Error(missingEnvironmentMessage(missing, err), { cause: err });
  }
}

async function startPostgresContainer(cleanups: Array<() => Promise<void>>): Promise<string> {
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
  try {
    const container = await new PostgreSqlContainer(POSTGRES_IMAGE).start();
    cleanups.push(async () => void (await container.stop()));
    return container.getConnectionUri();
  } catch (err) {
    throw new Error(`@switchboard/testkit: could not start ${POSTGRES_IMAGE}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

async function startRedisContainer(cleanups: Array<() => Promise<void>>): Promise<string> {
  const { RedisContainer } = await import("@testcontainers/redis");
  try {
    const container = await new RedisContainer(REDIS_IMAGE).start();
    cleanups.push(async () => void (await container.stop()));
    return container.getConnectionUrl();
  } catch (err) {
    throw new Error(`@switchboard/testkit: could not start ${REDIS_IMAGE}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

async function checkRedis(url: string): Promise<void> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  // connect() then rejects with a bare "Connection is closed"; the 'error' event says why.
  let socketError: unknown;
  redis.on("error", (err) => (socketError = err));
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    const why = errorMessage(socketError ?? err);
    throw new Error(`@switchboard/testkit: cannot reach Redis at ${redactUrl(url)}: ${why}`, { cause: err });
  } finally {
    redis.disconnect();
  }
}

async function createTemplate(
  adminUrl: string,
  templateName: string,
  migrate: (databaseUrl: string) => Promise<void>,
): Promise<void> {
  try {
    await createDatabase(adminUrl, templateName);
  } catch (err) {
    throw new Error(
      `@switchboard/testkit: cannot create database ${templateName} on ${redactUrl(adminUrl)}: ${errorMessage(err)}`,
      { cause: err },
    );
  }
  try {
    await migrate(databaseUrlFor(adminUrl, templateName));
  } catch (err) {
    throw new Error(`@switchboard/testkit: migrating ${templateName} failed: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  // A session migrate left open would make every clone fail with 55006; end it and keep others out.
  await terminateConnections(adminUrl, templateName);
  await disallowConnections(adminUrl, templateName);
}

async function dropTemplateAndClones(adminUrl: string, templateName: string): Promise<void> {
  for (const clone of await findDatabases(adminUrl, clonePrefixOf(templateName))) {
    await dropDatabase(adminUrl, clone);
  }
  await dropDatabase(adminUrl, templateName);
}

/** Run cleanups newest first, all of them even if some fail; then report the failures. */
async function runCleanups(cleanups: Array<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = [];
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, "@switchboard/testkit: teardown failed");
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
