// Upper bounds on device queue lengths, so that the queue limit (MAX_QUEUE_LENGTH) costs an exact
// count only for a device whose queue may really be near it.
//
// Every queued row takes the next number of its device's `queue_seq`, so a device's sequence bounds
// its queue length, but only until the device has received MAX_QUEUE_LENGTH messages in its life:
// from then on every send to it would count its queue. An exact count `n` taken once the sequence
// read `s` bounds the queue at any later sequence `s'` by `n + (s' - s)` (rows are only added by
// taking numbers; acks and expiry only remove), so a device is counted again only when that many
// messages may have piled up since. Sound across instances: the sequence is the database's.
import { countQueued, type Database, type QueueDevice } from "@switchboard/storage";
import type { Kysely } from "kysely";

/** What a device's queue length is known not to exceed. */
export interface QueueBounds {
  /** An upper bound on the device's queue length, given its `queueSeq` as just read. */
  upper(device: QueueDevice): number;
  /** Records an exact count of the device's queue, taken after `device.queueSeq` was read. */
  counted(device: QueueDevice, count: number): void;
  /**
   * Exact queue lengths (keyed `account/device`) of the devices whose queue may reach `max` once
   * `adding` more rows are queued; the others are far from it and absent. Counts, and records
   * the counts, only for those.
   */
  nearLimit(
    db: Kysely<Database>,
    devices: readonly QueueDevice[],
    adding: number,
    max: number,
  ): Promise<Map<string, number>>;
}

/** Creates the bounds, remembering the last count of at most `maxDevices` devices (oldest dropped). */
export function createQueueBounds(maxDevices = 100_000): QueueBounds {
  const counts = new Map<string, { count: number; seq: number }>();
  const keyOf = (d: QueueDevice) => `${d.accountId}/${d.deviceId}`;
  const bounds: QueueBounds = {
    upper(d) {
      const c = counts.get(keyOf(d));
      // A sequence below the one counted at belongs to a device registered again: start over.
      if (c === undefined || d.queueSeq < c.seq) return d.queueSeq;
      return Math.min(d.queueSeq, c.count + (d.queueSeq - c.seq));
    },
    counted(d, count) {
      const key = keyOf(d);
      counts.delete(key);
      if (counts.size >= maxDevices) {
        const oldest = counts.keys().next();
        if (oldest.done !== true) counts.delete(oldest.value);
      }
      counts.set(key, { count, seq: d.queueSeq });
    },
    async nearLimit(db, devices, adding, max) {
      // The sequence alone settles most devices (no lookup on the send path until a device's
      // lifetime total nears the limit).
      const near = devices.filter((d) => d.queueSeq + adding >= max && bounds.upper(d) + adding >= max);
      const queued = await countQueued(db, near);
      for (const d of near) bounds.counted(d, queued.get(keyOf(d)) ?? 0);
      return queued;
    },
  };
  return bounds;
}
