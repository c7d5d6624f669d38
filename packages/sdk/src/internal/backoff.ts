// Reconnect back-off shared by the receive loop (and usable by anything that reconnects to a
// gateway): exponential ceiling with full jitter, so that thousands of devices dropped by one
// gateway restart do not come back in lock-step.

/** Bounds of a reconnect back-off, in milliseconds. */
export interface BackoffBounds {
  /** Ceiling of the first retry's delay. */
  initial: number;
  /** Largest ceiling: the delay never exceeds it. */
  max: number;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry): uniformly random in
 * `[0, min(max, initial * 2^attempt))` ("full jitter"). `random` defaults to Math.random.
 */
export function reconnectDelayMs(
  attempt: number,
  bounds: BackoffBounds,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(bounds.max, bounds.initial * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
