import { ConfigError } from "./config-error.js";

/** `EX_CONFIG` from sysexits.h: the process exits with it when its configuration is invalid. */
export const EXIT_CONFIG = 78;

/**
 * Runs `load` (typically a service's `loadConfig`) and returns its result. On a `ConfigError` it
 * writes "configuration error:" and each problem to `stderr`, then exits the process with
 * `EXIT_CONFIG` (78); any other error is rethrown.
 */
export function loadOrExit<T>(load: () => T, stderr: { write(chunk: string): unknown } = process.stderr): T {
  try {
    return load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // process.stderr writes to files and pipes synchronously, so the text is out before exit.
    stderr.write(`configuration error:\n${err.problems.join("\n")}\n`);
    process.exit(EXIT_CONFIG);
  }
}
