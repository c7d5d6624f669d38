import type { Redis } from "ioredis";
import type { FanoutLogger } from "./fanout.js";

/** Hooks {@link watchConnection} calls on one ioredis connection. */
export interface ConnectionWatch {
  /** `host:port`, for logs. */
  node: string;
  /** `publisher`, `subscriber` or `shard-subscriber`, for logs. */
  role: string;
  log: FanoutLogger | undefined;
  /** True once the fanout closes the connection on purpose: no loss is reported then. */
  isClosing: () => boolean;
  /** The connection dropped after having been ready (server-side subscriptions are gone). */
  onLost?: () => void;
  /** The connection is ready again after {@link ConnectionWatch.onLost}. */
  onRestored?: () => void;
  /**
   * PING this often, in ms, and reconnect if a PING stays unanswered as long again. A silent network
   * partition leaves a half-open TCP connection that the OS may report only after many minutes;
   * events would be lost without a resync until then.
   */
  heartbeatIntervalMs: number;
}

/**
 * Track one connection's life: report a loss once per outage and its recovery, log errors (the first
 * one of an outage at warn, the repeats of each reconnect attempt at debug), and force a reconnect
 * when the server stops answering heartbeats. ioredis reconnects by itself with exponential back-off.
 */
export function watchConnection(redis: Redis, watch: ConnectionWatch): void {
  const { node, role, log } = watch;
  let everReady = false;
  let lost = false;
  let errorLogged = false;
  redis.on("ready", () => {
    errorLogged = false;
    everReady = true;
    if (!lost) return;
    lost = false;
    log?.info({ node, role }, "fanout reconnected");
    watch.onRestored?.();
  });
  redis.on("close", () => {
    if (!everReady || lost || watch.isClosing()) return;
    lost = true;
    log?.warn({ node, role }, "fanout connection lost");
    watch.onLost?.();
  });
  startHeartbeat(redis, watch);
  redis.on("error", (err: unknown) => {
    if (watch.isClosing()) return;
    if (errorLogged) {
      log?.debug({ err, node, role }, "fanout redis error");
    } else {
      errorLogged = true;
      log?.warn({ err, node, role }, "fanout redis error");
    }
  });
}

function startHeartbeat(redis: Redis, watch: ConnectionWatch): void {
  const { node, role, log, heartbeatIntervalMs } = watch;
  let pingSentAt: number | undefined;
  const timer = setInterval(() => {
    if (watch.isClosing() || redis.status === "end") {
      clearInterval(timer);
      return;
    }
    if (redis.status !== "ready") {
      pingSentAt = undefined;
      return;
    }
    if (pingSentAt !== undefined) {
      const waitedMs = Math.round(performance.now() - pingSentAt);
      if (waitedMs < heartbeatIntervalMs) return;
      log?.warn({ node, role, waitedMs }, "fanout heartbeat timed out");
      pingSentAt = undefined;
      redis.disconnect(true);
      return;
    }
    const sentAt = performance.now();
    pingSentAt = sentAt;
    const answered = () => {
      if (pingSentAt === sentAt) pingSentAt = undefined;
    };
    // A failed PING means the connection closed, which the "close" handler reports.
    redis.ping().then(answered, answered);
  }, heartbeatIntervalMs);
  timer.unref();
}

/** View a payload as a Buffer without copying, as ioredis needs for binary-safe arguments. */
export function toBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** Throw the first error of a pipeline's results, if any. */
export function throwPipelineError(results: Array<[error: Error | null, result: unknown]> | null): void {
  if (results === null) throw new Error("pipeline was discarded");
  for (const [error] of results) {
    if (error !== null) throw error;
  }
}

/** Close a connection: gracefully (flushing pending commands) when it is up, at once otherwise. */
export async function closeConnection(redis: Redis): Promise<void> {
  if (redis.status === "ready") {
    try {
      await redis.quit();
      return;
    } catch {
      // The connection broke while quitting; disconnect below releases it anyway.
    }
  }
  redis.disconnect();
}
