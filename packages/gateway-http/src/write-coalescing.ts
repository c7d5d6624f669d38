// Frames written to one client in one tick of the event loop, sent in one write.
//
// A gateway hands a device's events over as the delivery link delivers them: a batch of envelopes
// at once, of which one device often gets two (a message and a delivery receipt, or a send result
// besides). Written one by one, each is a system call and a wake-up of the client; held with
// cork() and released together, they are one (docs/benchmarks.md, tenth round, for what it saved).

/** A stream whose writes can be held and released together: a net.Socket, an http.ServerResponse. */
export interface Corkable {
  cork(): void;
  uncork(): void;
  /** Bytes written and not yet handed to the kernel (held ones included). */
  readonly writableLength: number;
}

/**
 * Most bytes held back per stream: past it, what the tick wrote so far goes out at once. A burst
 * (a reconnecting device's backlog) then streams as it did without holding, and a gateway's
 * slow-consumer limit on unsent bytes still measures what the client has not read.
 */
export const MAX_HELD_BYTES = 64 * 1024;

/**
 * Returns `hold(stream)`: call it before writing to `stream`. The first call in a tick corks the
 * stream; every stream held in the tick is uncorked in the check phase (`setImmediate`), after the
 * tick's callbacks and microtasks have written their frames — no timer, no added latency beyond
 * the tick. One coalescer serves any number of streams.
 */
export function createWriteCoalescer(): (stream: Corkable) => void {
  const held = new Set<Corkable>();
  const release = () => {
    for (const stream of held) stream.uncork();
    held.clear();
  };
  return (stream) => {
    if (held.has(stream)) {
      if (stream.writableLength < MAX_HELD_BYTES) return;
      stream.uncork();
      stream.cork();
      return;
    }
    if (held.size === 0) setImmediate(release);
    held.add(stream);
    stream.cork();
  };
}
