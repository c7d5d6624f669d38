// The values createGlobalSetup provides to test workers; both entry points import this for the types.

declare module "vitest" {
  export interface ProvidedContext {
    /** The migrated template database. Clone it (`cloneTemplateDatabase`); never connect to it. */
    postgresTemplateUrl: string;
    /** A database on the same server to issue `CREATE`/`DROP DATABASE` from. */
    postgresAdminUrl: string;
    /** The Redis server; tests isolate their keys with `redisTestPrefix()`. */
    redisUrl: string;
  }
}

/** The keys `createGlobalSetup` provides through vitest's `provide`/`inject`. */
export type ProvidedKey = "postgresTemplateUrl" | "postgresAdminUrl" | "redisUrl";
