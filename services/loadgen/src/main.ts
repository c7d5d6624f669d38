// `pnpm loadtest`: parse the command line, run, print the summary, exit 0 (passed), 1 (failed)
// or 2 (bad command line or failed setup).
import { useBufferTextEncoding } from "@switchboard/grpc";
import pino from "pino";
import { parseCommandLine, USAGE, UsageError } from "./config.js";
import { summarize } from "./report.js";
import { runLoadTest } from "./run.js";

let parsed;
try {
  parsed = parseCommandLine(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(
    `${err.problems.map((p) => `error: ${p}`).join("\n")}\n\nRun with --help for the options.\n`,
  );
  process.exit(2);
}
if (parsed.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

// The load generator encodes as many messages as the services it drives.
useBufferTextEncoding();

// Warnings (stream reconnects) go to stderr as one short JSON line each: no stacks.
const log = pino(
  {
    level: "warn",
    base: { service: "loadgen" },
    serializers: {
      err: (e: unknown) =>
        e instanceof Error
          ? { type: e.name, message: e.message, ...("reason" in e ? { reason: e.reason } : {}) }
          : { message: String(e) },
    },
  },
  pino.destination(2),
);
const live = process.stderr.isTTY;
let partial = false;
const progress = (line: string) => {
  // On a terminal the live line rewrites itself; elsewhere every line is kept.
  if (live && line.startsWith("[")) {
    process.stderr.write(`\r\x1b[2K${line}`);
    partial = true;
    return;
  }
  process.stderr.write(`${partial ? "\n" : ""}${line}\n`);
  partial = false;
};

// The first Ctrl-C ends the traffic early (the run still drains and reports); the second quits.
const interrupt = new AbortController();
process.on("SIGINT", () => {
  if (interrupt.signal.aborted) process.exit(130);
  interrupt.abort();
});

try {
  const { report, files } = await runLoadTest(parsed.options, { progress, log, signal: interrupt.signal });
  if (partial) process.stderr.write("\n");
  process.stdout.write(`${summarize(report)}\n`);
  if (files) process.stdout.write(`report      ${files.json}\n            ${files.html}\n`);
  process.exit(report.exitCode);
} catch (err) {
  if (partial) process.stderr.write("\n");
  process.stderr.write(`loadtest failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
