import type { FanoutLogger } from "../../src/index.js";

/** One call to a {@link FanoutLogger} method. */
export interface LogEntry {
  level: "warn" | "info" | "debug";
  msg: string;
  obj: Record<string, unknown>;
}

/** A logger that keeps every entry, for asserting on what fanout reports. */
export interface RecordingLogger {
  log: FanoutLogger;
  entries: LogEntry[];
  /** The messages logged at `level`, in order. */
  messages: (level: LogEntry["level"]) => string[];
}

/** A fresh {@link RecordingLogger}. */
export function recordingLogger(): RecordingLogger {
  const entries: LogEntry[] = [];
  const at = (level: LogEntry["level"]) => (obj: Record<string, unknown>, msg: string) =>
    void entries.push({ level, msg, obj });
  return {
    log: { warn: at("warn"), info: at("info"), debug: at("debug") },
    entries,
    messages: (level) => entries.filter((entry) => entry.level === level).map((entry) => entry.msg),
  };
}
