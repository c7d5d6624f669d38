import { pino } from "pino";
import type { DestinationStream, LevelWithSilent, Logger } from "pino";

/**
 * Paths pino replaces with "[redacted]": a backstop for secrets and payloads that reach a log call
 * by mistake. Pino's `*.x` matches only one level below the root, so top-level keys are listed too.
 */
export const REDACT_PATHS: readonly string[] = [
  "authorization",
  "*.authorization",
  "req.headers.authorization",
  ...[
    "ciphertext",
    "content",
    "token",
    "password",
    "secret",
    "credential",
    // Field spellings of tokens and payloads used by the gateways' APIs and the SDK.
    "access_token",
    "accessToken",
    "appToken",
    "app_token",
    "ciphertexts",
    "identity_key",
    "private_key",
  ].flatMap((key) => [key, `*.${key}`]),
];

/** Options of `createLogger`. */
export interface LoggerOptions {
  /** Service name, bound to every line as `service`. */
  service: string;
  /** Service version, bound to every line as `version`. */
  version: string;
  /** Minimum level written; `silent` writes nothing. */
  level: LevelWithSilent;
  /** Accepted for `LOG_PRETTY` but currently ignored: pino-pretty is not a dependency, so output is always JSON. */
  pretty?: boolean;
  /** Where JSON lines go (one `write` per line); stdout when omitted. Tests pass an in-memory sink. */
  destination?: DestinationStream;
}

/**
 * Creates the process's root pino logger: JSON lines with `service` and `version`, an ISO `time`
 * and `REDACT_PATHS` censored. Call it once in `main.ts` and hand out `log.child(...)`.
 */
export function createLogger(options: LoggerOptions): Logger {
  const { service, version, level, destination } = options;
  return pino(
    {
      level,
      base: { service, version },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: [...REDACT_PATHS], censor: "[redacted]" },
    },
    destination,
  );
}
