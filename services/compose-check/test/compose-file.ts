// Reading docker-compose.yml the way docker-compose does, as far as the local-process test needs:
// YAML with merge keys, `${VAR}` interpolation, the environment of each service, depends_on and
// healthchecks, and the command of images built from our Dockerfile.
import { readFileSync } from "node:fs";
import { parse } from "yaml";

/** The subset of a compose service this check reads. */
export interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string; args?: Record<string, string> };
  command?: string[];
  environment?: Record<string, string | number | boolean | null>;
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string[] | string };
  ports?: string[];
}

/** A parsed compose file. */
export interface ComposeFile {
  services: Record<string, ComposeService>;
}

/** Parses a compose file (YAML 1.1 merge keys `<<: *anchor` included, as docker-compose reads them). */
export function readCompose(path: string): ComposeFile {
  const doc = parse(readFileSync(path, "utf8"), { merge: true }) as Partial<ComposeFile> | null;
  if (!doc?.services) throw new Error(`${path}: no services`);
  return { services: doc.services };
}

/**
 * Interpolates `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
 * `${VAR?error}` and `$$` as docker-compose does. A missing required variable throws its error.
 */
export function interpolate(value: string, env: Readonly<Record<string, string | undefined>>): string {
  return value.replace(
    /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_match, dollar?: string, name?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
      if (dollar !== undefined) return "$";
      if (bare !== undefined) return env[bare] ?? "";
      const key = name ?? "";
      const current = env[key];
      const missing = colon === ":" ? current === undefined || current === "" : current === undefined;
      if (op === "-") return missing ? (arg ?? "") : (current ?? "");
      if (op === "?") {
        if (missing) throw new Error(`required variable ${key} is missing: ${arg ?? ""}`);
        return current ?? "";
      }
      return current ?? "";
    },
  );
}

/** A service's environment with every value interpolated (booleans and numbers as strings). */
export function environmentOf(
  service: ComposeService,
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, raw] of Object.entries(service.environment ?? {})) {
    if (raw === null) continue;
    out[key] = interpolate(String(raw), env);
  }
  return out;
}

/** `depends_on` as service name → condition (the list form means `service_started`). */
export function dependenciesOf(service: ComposeService): Record<string, string> {
  const deps = service.depends_on ?? {};
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, "service_started"]));
  return Object.fromEntries(
    Object.entries(deps).map(([name, d]) => [name, d.condition ?? "service_started"]),
  );
}

/** The healthcheck's command as an argument list (`CMD` form), or undefined. */
export function healthcheckCommand(service: ComposeService): string[] | undefined {
  const test = service.healthcheck?.test;
  if (!Array.isArray(test) || test[0] !== "CMD") return undefined;
  return test.slice(1);
}

/** The default command (`CMD [...]`) and `ENV` of a Dockerfile's last stage. */
export function readDockerfileRuntime(path: string): { command: string[]; env: Record<string, string> } {
  const lines = readFileSync(path, "utf8").split("\n");
  const lastFrom = lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  let command: string[] | undefined;
  const env: Record<string, string> = {};
  for (const line of lines.slice(lastFrom)) {
    const cmd = /^CMD\s+(\[.*\])\s*$/i.exec(line);
    if (cmd?.[1]) command = JSON.parse(cmd[1]) as string[];
    const e = /^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$/i.exec(line);
    if (e?.[1] !== undefined && e[2] !== undefined) env[e[1]] = e[2];
  }
  if (!command) throw new Error(`${path}: no CMD in the last stage`);
  return { command, env };
}
