import { ConfigError } from "./config-error.js";
import type { EnvVar } from "./parsers.js";

/** A service's environment contract: variable name to parser. Compose specs by spreading fragments. */
export type EnvSpec = Readonly<Record<string, EnvVar<unknown>>>;

/** The typed result of `parseEnv` for a spec. */
export type EnvOf<S extends EnvSpec> = { readonly [K in keyof S]: S[K] extends EnvVar<infer T> ? T : never };

/** Raw environment variables, as in `process.env`. */
export type EnvSource = Readonly<Record<string, string | undefined>>;

/**
 * Parses every variable of `spec` from `env` and returns a frozen, typed object. Unset and empty
 * values fall back to the parser's default (or `undefined` when optional).
 * Throws one `ConfigError` listing every missing or invalid variable.
 */
export function parseEnv<S extends EnvSpec>(
  spec: S,
  // eslint-disable-next-line no-restricted-properties
  env: EnvSource = process.env,
): EnvOf<S> {
  const result: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, parser] of Object.entries(spec)) {
    const raw = env[name];
    if (raw === undefined || raw === "") {
      if (parser.fallback === undefined) problems.push(`${name}: required but not set`);
      else result[name] = parser.fallback.value;
      continue;
    }
    const parsed = parser.parse(raw);
    if (parsed.ok) result[name] = parsed.value;
    else problems.push(`${name}: ${parsed.problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(result) as EnvOf<S>;
}
