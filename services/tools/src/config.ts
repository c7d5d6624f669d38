import { databaseEnv, parseEnv, str, type EnvSource } from "@switchboard/config";

/** The environment of `pnpm export` and `pnpm restore`, parsed once. Listed in `.env.example`. */
export const toolsEnv = {
  /** The database to export from, or the fresh database to restore into. */
  DATABASE_URL: databaseEnv.DATABASE_URL,
  /** Set by pnpm to the directory it was run from: relative `--out`/`--in` paths resolve there. */
  INIT_CWD: str({ optional: true }),
};

/** Parses the tools' environment; throws ConfigError listing every problem. */
export const loadConfig = (env?: EnvSource) => parseEnv(toolsEnv, env);
