import { randomUUID } from "node:crypto";
import type { Fanout } from "@switchboard/fanout";
import {
  findPendingQueues,
  isUnavailableError,
  readQueue,
  type Database,
  type DeviceRef,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import pLimit from "p-limit";
import type { Logger } from "pino";
import { encodeEnvelopeRow, type EnvelopeSummary } from "../domain/envelope-wire.js";
import type { Franker } from "../domain/franking.js";
import { EPHEMERAL_TTL_MS } from "../domain/limits.js";
import type { Metrics } from "../metrics.js";
import { decodeDeviceEvent, encodeDisplaceEvent, type DeviceEvent } from "./events.js";

/** Why a subscription ended. */
export type CloseReason = "displaced" | "removed" | "unsubscribed" | "shutdown" | "stream_closed";

/** Where a subscription writes: one device's view of a stream. */
export interface DeliverySink {
  /**
   * Pushes one envelope (the stream applies its own write buffering). `wire` is a message whose
   * only field is field 1, the envelope (a fan-out event or a row encoded by envelope-wire.ts):
   * writable as is as a ConnectResponse delivery or a ReceiveMessagesResponse envelope, so the
   * hot path never builds an Envelope object. It may be a view into a larger buffer.
   */
  deliver(wire: Uint8Array): void;
  /** The stored backlog has been sent. */
  queueEmpty(): void;
  /** The subscription ended for `reason` (not called for "stream_closed"/"unsubscribed"). */
  closed(reason: CloseReason): void;
}

/** A live subscription of one device. */
export interface Subscription {
  readonly id: string;
  readonly device: DeviceRef;
  /** Marks ids acknowledged on this stream, freeing window slots. */
  acked(messageIds: readonly string[]): void;
  /** Ends the subscription (its unacknowledged messages stay queued). */
  close(reason: CloseReason): Promise<void>;
}

/** Options of {@link createSubscriptionManager}. */
export interface SubscriptionManagerOptions {
  db: Kysely<Database>;
  fanout: Fanout;
  log: Logger;
  metrics: Metrics;
  /**
   * Look for queued messages this long after a subscription last heard a wake-up, in case one was
   * lost (a lost wake-up followed by another shows as a sequence gap and is read at once).
   */
  pollMs: number;
  /** Most rows read per query. */
  pageSize?: number;
  /**
   * Queue reads in flight at once across all subscriptions (default 4). Keeps a burst of reads —
   * thousands of devices subscribing, or re-reading after a fan-out resync — from taking every
   * pooled connection while sends and acks wait.
   */
  maxConcurrentReads?: number;
  /** Adds server franking tags to stored messages with a franking commitment. */
  franker?: Franker;
}

/** Holds this instance's device subscriptions. */
export interface SubscriptionManager {
  /**
   * Subscribes a device: displaces any other subscription of it (here or on another instance),
   * then streams its backlog in order, a queue-empty marker, and live messages, keeping at most
   * `window` unacknowledged envelopes in flight.
   */
  subscribe(device: DeviceRef, window: number, sink: DeliverySink): Promise<Subscription>;
  /** The local subscription of a device, if any. */
  find(device: DeviceRef): Subscription | undefined;
  /** Closes a device's local subscription because the device was removed. */
  removeDevice(device: DeviceRef): Promise<void>;
  /** Closes every subscription (shutdown). */
  close(): Promise<void>;
}

const keyOf = (d: DeviceRef) => `${d.accountId}/${d.deviceId}`;

/** Devices per poll statement. */
const POLL_PROBE_MAX = 2_000;

/**
 * Creates the subscription manager. Ordering rule: a subscription keeps a cursor (the last
 * sequence pushed) and only ever reads `seq > cursor` from PostgreSQL; since sequence numbers
 * commit in order per device, nothing is skipped. A fan-out event whose sequence is exactly
 * `cursor + 1` is pushed directly (no read); anything else triggers a read. After a fan-out
 * resync (Redis reconnect) every subscription re-reads, and each also re-reads every `pollMs`.
 */
export function createSubscriptionManager(opts: SubscriptionManagerOptions): SubscriptionManager {
  const subs = new Map<string, DeviceSubscription>();
  const pageSize = opts.pageSize ?? 200;
  const reads = pLimit(opts.maxConcurrentReads ?? 4);

  class DeviceSubscription implements Subscription {
    readonly id = randomUUID();
    readonly createdAtMs = Date.now();
    private cursor = 0;
    private readonly inflight = new Map<string, number>();
    private drained = false;
    /** The window filled up while messages may be waiting: the next ack must trigger a read. */
    private blocked = false;
    private reading = false;
    private dirty = false;
    /**
     * Wake-ups with their envelope that arrived while a read was under way, by sequence: after the
     * read, those that continue its rows are pushed from here, and only a gap left means another
     * read — so a stream falls back to the plain wake-up path as soon as it has caught up, instead
     * of re-reading for every wake-up that raced a read.
     */
    private readonly held = new Map<number, { envelope: EnvelopeSummary; wire: Uint8Array }>();
    private closed = false;
    /** When to look for messages whose wake-up was lost; pushed back by every wake-up heard. */
    nextPollAt: number;
    private unsubscribeFanout: (() => Promise<void>) | undefined;
    private readonly log: Logger;

    constructor(
      readonly device: DeviceRef,
      private readonly window: number,
      private readonly sink: DeliverySink,
    ) {
      this.log = opts.log.child({
        accountId: device.accountId,
        deviceId: device.deviceId,
        subscriptionId: this.id,
      });
      this.nextPollAt = Date.now() + opts.pollMs * (0.5 + Math.random() / 2);
    }

    async start(): Promise<void> {
      this.unsubscribeFanout = await opts.fanout.subscribe(this.device, (payload) => this.onEvent(payload));
      // Tell other instances; then read the backlog (wake-ups from now on are not missed).
      await opts.fanout.publish([
        { key: this.device, payload: encodeDisplaceEvent(this.id, this.createdAtMs) },
      ]);
      this.pump();
    }

    isClosed() {
      return this.closed;
    }

    private onEvent(payload: Uint8Array) {
      if (this.closed) return;
      const ev = decodeDeviceEvent(payload);
      if (!ev) {
        this.log.warn({ bytes: payload.byteLength }, "undecodable fan-out event");
        return;
      }
      this.handle(ev, Date.now());
    }

    private handle(ev: DeviceEvent, now: number) {
      switch (ev.kind) {
        case "displace":
          if (
            ev.subscriptionId !== this.id &&
            (ev.createdAtMs > this.createdAtMs ||
              (ev.createdAtMs === this.createdAtMs && ev.subscriptionId > this.id))
          ) {
            void this.close("displaced");
          }
          return;
        case "removed":
          void this.close("removed");
          return;
        case "acked":
          this.acked(ev.messageIds);
          return;
        case "message": {
          const env = ev.envelope;
          if (env.ephemeral) {
            if (
              Date.now() - Number(env.serverTimestampMs) > EPHEMERAL_TTL_MS ||
              this.inflight.size >= this.window
            ) {
              opts.metrics.ephemeralDropped.inc();
              return;
            }
            this.push(env, false, ev.wire, now);
            return;
          }
          // The fan-out path to this device works: a wake-up lost from now on is either followed
          // by another (a gap, read below) or found by the poll, pollMs after this one.
          this.nextPollAt = now + opts.pollMs;
          const seq = env.sequence;
          if (seq <= this.cursor) return;
          if (this.inflight.size >= this.window) {
            this.blocked = true;
            return;
          }
          if (ev.inline && this.reading && this.held.size < this.window) {
            this.held.set(seq, { envelope: env, wire: ev.wire });
            return;
          }
          if (ev.inline && seq === this.cursor + 1 && this.drained && !this.reading) {
            this.push(env, true, ev.wire, now);
            return;
          }
          this.pump();
          return;
        }
      }
    }

    private push(
      env: Pick<EnvelopeSummary, "id" | "sequence" | "serverTimestampMs">,
      tracked: boolean,
      wire: Uint8Array,
      now: number,
    ) {
      if (tracked) {
        this.inflight.set(env.id, env.sequence);
        this.cursor = env.sequence;
      }
      opts.metrics.deliveries.inc();
      opts.metrics.pushSeconds.observe(Math.max(0, now - env.serverTimestampMs) / 1000);
      this.sink.deliver(wire);
    }

    acked(messageIds: readonly string[]) {
      let freed = false;
      for (const id of messageIds) freed = this.inflight.delete(id) || freed;
      // Only a window that was full can hold back messages; otherwise reading now finds nothing.
      if (freed && this.blocked && !this.closed) {
        this.blocked = false;
        this.pump();
      }
    }

    /**
     * What the poll should do now: `probe` the queue (with others), `read` it (the backlog read
     * failed earlier), or nothing (not due, a read in progress, or a full window the next ack
     * reopens with a read).
     */
    duePoll(now: number): "probe" | "read" | undefined {
      if (now < this.nextPollAt || this.closed || this.reading || this.inflight.size >= this.window) return;
      return this.drained ? "probe" : "read";
    }

    /** Where a poll looks from: the last sequence pushed. */
    get polledFrom(): number {
      return this.cursor;
    }

    /** Reads and pushes until the window is full or the queue is drained; coalesces triggers. */
    pump() {
      if (this.closed) return;
      if (this.reading) {
        this.dirty = true;
        return;
      }
      this.reading = true;
      void this.drain().finally(() => {
        this.reading = false;
      });
    }

    private async drain() {
      try {
        do {
          this.dirty = false;
          while (!this.closed) {
            if (this.inflight.size >= this.window) {
              this.blocked = true;
              break;
            }
            const want = Math.min(pageSize, this.window - this.inflight.size);
            opts.metrics.queueReads.inc();
            const after = this.cursor;
            const rows = await reads(() =>
              this.closed ? [] : readQueue(opts.db, this.device, after, want, Date.now()),
            );
            if (this.closed) return;
            const now = Date.now();
            for (const row of rows) {
              if (row.seq <= this.cursor) continue;
              this.push(
                {
                  id: row.message_id,
                  sequence: Number(row.seq),
                  serverTimestampMs: Number(row.server_timestamp_ms),
                },
                true,
                encodeEnvelopeRow(row, { franker: opts.franker, asField1: true }),
                now,
              );
            }
            if (rows.length < want) {
              if (!this.drained) {
                this.drained = true;
                this.sink.queueEmpty();
              }
              break;
            }
          }
          if (this.releaseHeld()) this.dirty = true;
        } while (this.dirty && !this.closed);
      } catch (err) {
        // Retry on the next trigger or poll; the cursor has not moved past anything unsent.
        if (isUnavailableError(err)) this.log.warn({ err }, "queue read failed");
        else this.log.error({ err }, "queue read failed");
        this.nextPollAt = Math.min(this.nextPollAt, Date.now() + 1000);
      }
    }

    /**
     * Pushes the held wake-ups that continue the cursor (sequence `cursor + 1`, `cursor + 2`, …)
     * while the window has room, and drops the rest. Returns whether one was dropped past a gap
     * (a message not seen yet, so the queue must be read again).
     */
    private releaseHeld(): boolean {
      if (this.held.size === 0) return false;
      const now = Date.now();
      let next: { envelope: EnvelopeSummary; wire: Uint8Array } | undefined;
      while (
        !this.closed &&
        this.inflight.size < this.window &&
        (next = this.held.get(this.cursor + 1)) !== undefined
      ) {
        this.held.delete(this.cursor + 1);
        this.push(next.envelope, true, next.wire, now);
      }
      let unseen = false;
      for (const seq of this.held.keys()) if (seq > this.cursor) unseen = true;
      this.held.clear();
      if (unseen && this.inflight.size >= this.window) {
        // The next ack reopens the window with a read, which finds them.
        this.blocked = true;
        return false;
      }
      return unseen;
    }

    async close(reason: CloseReason): Promise<void> {
      if (this.closed) return;
      this.closed = true;
      if (subs.get(keyOf(this.device)) === this) subs.delete(keyOf(this.device));
      opts.metrics.streams.set(subs.size);
      if (reason !== "stream_closed" && reason !== "unsubscribed") this.sink.closed(reason);
      this.log.debug({ reason }, "subscription closed");
      try {
        await this.unsubscribeFanout?.();
      } catch (err) {
        this.log.warn({ err }, "fan-out unsubscribe failed");
      }
    }
  }

  const unResync = opts.fanout.onResync(() => {
    opts.log.info({ subscriptions: subs.size }, "fan-out resync: re-reading queues");
    for (const s of subs.values()) s.pump();
  });
  // The poll: every tick, the subscriptions that heard nothing for pollMs are probed together (one
  // statement per POLL_PROBE_MAX devices, one tick's probe at a time), and only those with
  // something queued after their cursor read it.
  let probing = false;
  const pollTimer = setInterval(
    () => {
      if (probing) return;
      const now = Date.now();
      const due: DeviceSubscription[] = [];
      for (const s of subs.values()) {
        const what = s.duePoll(now);
        if (what === "probe") due.push(s);
        else if (what === "read") {
          s.nextPollAt = now + opts.pollMs;
          s.pump();
        }
      }
      if (due.length === 0) return;
      for (const s of due) s.nextPollAt = now + opts.pollMs;
      probing = true;
      void probe(due, now).finally(() => {
        probing = false;
      });
    },
    Math.min(1000, opts.pollMs),
  );
  pollTimer.unref();

  async function probe(due: DeviceSubscription[], now: number): Promise<void> {
    for (let i = 0; i < due.length; i += POLL_PROBE_MAX) {
      const chunk = due.slice(i, i + POLL_PROBE_MAX);
      try {
        const pending = await reads(() =>
          findPendingQueues(
            opts.db,
            chunk.map((s) => ({ ...s.device, afterSeq: s.polledFrom })),
            now,
          ),
        );
        for (const d of pending) subs.get(keyOf(d))?.pump();
      } catch (err) {
        // Try these again in a second; their cursors have not moved past anything unsent.
        if (isUnavailableError(err)) opts.log.warn({ err, devices: chunk.length }, "queue poll failed");
        else opts.log.error({ err, devices: chunk.length }, "queue poll failed");
        for (const s of chunk) s.nextPollAt = Math.min(s.nextPollAt, Date.now() + 1000);
      }
    }
  }

  return {
    async subscribe(device, window, sink) {
      const existing = subs.get(keyOf(device));
      if (existing) await existing.close("displaced");
      const sub = new DeviceSubscription(device, window, sink);
      subs.set(keyOf(device), sub);
      opts.metrics.streams.set(subs.size);
      try {
        await sub.start();
      } catch (err) {
        await sub.close("stream_closed");
        throw err;
      }
      return sub;
    },
    find(device) {
      return subs.get(keyOf(device));
    },
    async removeDevice(device) {
      await subs.get(keyOf(device))?.close("removed");
    },
    async close() {
      clearInterval(pollTimer);
      unResync();
      await Promise.all([...subs.values()].map((s) => s.close("shutdown")));
    },
  };
}
