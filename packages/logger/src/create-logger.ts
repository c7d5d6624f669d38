import { pino } from "pino";
import type { Bindings, ChildLoggerOptions, DestinationStream, LevelWithSilent, Logger } from "pino";
import { redact } from "./redact.js";

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
 * and the redaction backstop (`redact.ts`: REDACTED_KEYS at the top level and one level down) over
 * every line's fields, every child's bindings and every object interpolated into a message. Call it
 * once in `main.ts` and hand out `log.child(...)`.
 */
export function createLogger(options: LoggerOptions): Logger {
  const { service, version, level, destination } = options;
  const root = pino(
    {
      level,
      base: { service, version },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Not pino's `redact` option, which costs ~8 µs a line here (see redact.ts).
      formatters: { log: redact },
      hooks: {
        // log.info("… %o", value) / log.info(obj, "… %j", value): interpolated objects too.
        logMethod(args, method) {
          for (let i = 1; i < args.length; i++) {
            const arg: unknown = args[i];
            if (typeof arg === "object" && arg !== null) args[i] = redact(arg);
          }
          method.apply(this, args);
        },
      },
    },
    destination,
  );
  // A child's bindings, redacted as the lines are. pino's `formatters.bindings` sees only the root's
  // `base` (children reset it), so `child` itself does it: children inherit it from the root.
  // Taken unbound on purpose: it runs with `this` the logger it is called on (the root or a child).
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const pinoChild = root.child;
  root.child = function <L extends string = never>(
    this: Logger,
    bindings: Bindings,
    childOptions?: ChildLoggerOptions<L>,
  ): Logger<L> {
    return Reflect.apply(pinoChild, this, [redact(bindings), childOptions]);
  };
  return root;
}
