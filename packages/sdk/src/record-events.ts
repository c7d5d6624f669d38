import type { ClientEvents } from "./events.js";

/** Every event a client emitted, in order, by event name. */
export type RecordedEvents = { [K in keyof ClientEvents]: ClientEvents[K][] };

// One entry per event (checked against ClientEvents: a new event fails to compile until listed).
const EVENT_NAMES = {
  message: true,
  sync: true,
  receipt: true,
  typing: true,
  deliveryReceipt: true,
  identityChanged: true,
  decryptionFailed: true,
  queueEmpty: true,
  error: true,
} satisfies Record<keyof ClientEvents, true>;

/**
 * Records every event `client` emits from now on into arrays by name (for tests, debugging and
 * small scripts that inspect what arrived instead of reacting to it).
 */
export function recordEvents(client: {
  on<K extends keyof ClientEvents>(event: K, listener: (e: ClientEvents[K]) => void): unknown;
}): RecordedEvents {
  const events = Object.fromEntries(
    Object.keys(EVENT_NAMES).map((n) => [n, []]),
  ) as unknown as RecordedEvents;
  for (const name of Object.keys(EVENT_NAMES) as (keyof ClientEvents)[])
    client.on(name, (e) => void (events[name] as unknown[]).push(e));
  return events;
}
