// A per-call deadline for the HTTP transports' requests. `AbortSignal.timeout` costs about 12 µs
// of CPU a call in Node 20 (a WeakRef and a FinalizationRegistry entry per signal, so that a
// signal nobody holds can drop its timer), and its timer outlives the request; an AbortController
// with a timer cleared when the call settles costs under half that. The Instagram-style
// transport's send (one request) fell from 15.5–23 to 11–12.5 µs of CPU in a microbenchmark, and
// the load generator makes three such requests per Instagram-style send.

/**
 * Runs `run` with a signal that aborts after `ms` with a `TimeoutError` DOMException (as
 * `AbortSignal.timeout` does), and clears the timer as soon as `run` settles. Whatever `run`
 * reads from the response must be read inside it, so the deadline covers the body too.
 */
export async function withTimeout<T>(ms: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    ms,
  );
  // Like AbortSignal.timeout's: the deadline alone keeps no process alive.
  timer.unref?.();
  try {
    return await run(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}
