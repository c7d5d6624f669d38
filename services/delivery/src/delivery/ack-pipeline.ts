import { randomUUID } from "node:crypto";
import { AppError, Code, isAppError } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import { EnvelopeType } from "@switchboard/proto";
import {
  deleteMessages,
  isRetryableTransactionError,
  isUnavailableError,
  type Database,
  type DeletedMessage,
  type DeviceRef,
  type QueueInsert,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { wantsDeliveryReceipt } from "../domain/envelope.js";
import type { Metrics } from "../metrics.js";
import { encodeAckedEvent } from "./events.js";
import type { SendPipeline } from "./send-pipeline.js";

interface PendingAck {
  device: DeviceRef;
  messageIds: string[];
  /** Tell the instance streaming this device that the ids were acknowledged (unary acks). */
  notify: boolean;
  resolve: (removed: number) => void;
  reject: (e: unknown) => void;
}

/** Options of {@link createAckPipeline}. */
export interface AckPipelineOptions {
  db: Kysely<Database>;
  fanout: Fanout;
  sends: SendPipeline;
  log: Logger;
  metrics: Metrics;
  batchMax: number;
  queueTtlMs: number;
  /**
   * How long an ack arriving while no batch is waiting lingers for others before its batch
   * starts (ms; 0: at once). Acks are off the delivery path (the stream's window is freed at
   * once), so a few milliseconds here turn one DELETE and one receipt commit per ack at low rates
   * into one per handful. Under load the batches fill while the previous ones run anyway.
   */
  lingerMs?: number;
}

/** The batched acknowledgement path. */
export interface AckPipeline {
  /** Removes acknowledged messages of one device; resolves with how many were still queued. */
  ack(device: DeviceRef, messageIds: string[], notify: boolean): Promise<number>;
  /** Waits for pending acks and stops. */
  close(): Promise<void>;
}

const MAX_TX_ATTEMPTS = 4;
const LANES = 2;

/** Builds the SERVER_DELIVERY_RECEIPT row for an acknowledged message. */
function receiptFor(d: DeletedMessage, now: number, ttlMs: number): QueueInsert {
  return {
    account_id: d.source_account_id as string,
    device_id: d.source_device_id ?? 0,
    message_id: randomUUID(),
    app: 0, // replaced by the target device's app when queued
    type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
    source_account_id: d.account_id,
    source_device_id: d.device_id,
    source_app: d.app,
    source_provider_id: "",
    source_registration_id: 0,
    client_message_id: d.client_message_id,
    client_timestamp_ms: d.client_timestamp_ms,
    server_timestamp_ms: now,
    expires_at_ms: now + ttlMs,
    flags: 0,
    group_id: null,
    report_tag: null,
    content: null,
    payload_id: null,
  };
}

/**
 * Creates the ack pipeline: acks from all devices are deleted in batched transactions (up to
 * `batchMax` ids each, two in parallel), which lock no device rows and so never wait for sends.
 * Each removed identified one-to-one message then queues a SERVER_DELIVERY_RECEIPT for its
 * sender device through the send pipeline (best effort, like Signal's receipts).
 */
export function createAckPipeline(opts: AckPipelineOptions): AckPipeline {
  const queue: PendingAck[] = [];
  let queuedIds = 0;
  let running = 0;
  let closing = false;
  let idle: (() => void) | undefined;
  let lingering: NodeJS.Timeout | undefined;
  const lingerMs = opts.lingerMs ?? 0;

  /** Starts batches now, or after the linger when the queue holds less than a batch. */
  function schedule() {
    if (lingerMs <= 0 || closing || queuedIds >= opts.batchMax) {
      kick();
      return;
    }
    lingering ??= setTimeout(() => {
      lingering = undefined;
      kick();
    }, lingerMs);
  }

  function kick() {
    if (lingering !== undefined) {
      clearTimeout(lingering);
      lingering = undefined;
    }
    while (running < LANES && queue.length > 0) {
      const batch: PendingAck[] = [];
      let ids = 0;
      while (
        queue.length > 0 &&
        (batch.length === 0 || ids + (queue[0] as PendingAck).messageIds.length <= opts.batchMax)
      ) {
        const p = queue.shift() as PendingAck;
        ids += p.messageIds.length;
        queuedIds -= p.messageIds.length;
        batch.push(p);
      }
      running += 1;
      void runBatch(batch).finally(() => {
        running -= 1;
        if (running === 0 && queue.length === 0 && idle) idle();
        kick();
      });
    }
  }

  async function runBatch(batch: PendingAck[]) {
    opts.metrics.ackBatchSize.observe(batch.reduce((n, p) => n + p.messageIds.length, 0));
    let deleted: DeletedMessage[] | undefined;
    for (let attempt = 1; !deleted; attempt++) {
      try {
        // One statement in its own implicit transaction: no BEGIN/COMMIT round trips.
        deleted = await deleteMessages(
          opts.db,
          batch.flatMap((p) => p.messageIds.map((messageId) => ({ ...p.device, messageId }))),
        );
      } catch (err) {
        if (attempt < MAX_TX_ATTEMPTS && isRetryableTransactionError(err)) continue;
        const error = isUnavailableError(err)
          ? new AppError(
              Code.Unavailable,
              "DATABASE_UNAVAILABLE",
              "message store unavailable; retry the ack",
              { cause: err, retryAfterMs: 1000 },
            )
          : isAppError(err)
            ? err
            : new AppError(Code.Internal, "INTERNAL", "internal error", { cause: err });
        if (error.code === Code.Internal) opts.log.error({ err }, "ack batch failed");
        else opts.log.warn({ err }, "ack batch failed");
        for (const p of batch) p.reject(error);
        return;
      }
    }
    const now = Date.now();
    const removedPer = new Map<string, number>();
    for (const d of deleted) {
      const k = `${d.account_id}/${d.device_id}`;
      removedPer.set(k, (removedPer.get(k) ?? 0) + 1);
      opts.metrics.endToEndSeconds.observe(Math.max(0, now - d.server_timestamp_ms) / 1000);
    }
    opts.metrics.acks.inc(deleted.length);
    for (const p of batch) {
      const k = `${p.device.accountId}/${p.device.deviceId}`;
      const n = Math.min(removedPer.get(k) ?? 0, p.messageIds.length);
      removedPer.set(k, (removedPer.get(k) ?? 0) - n);
      p.resolve(n);
    }
    const receipts = deleted.filter(wantsDeliveryReceipt).map((d) => receiptFor(d, now, opts.queueTtlMs));
    opts.metrics.receipts.inc(receipts.length);
    opts.sends.submitReceipts(receipts);
    const notices = batch
      .filter((p) => p.notify)
      .map((p) => ({ key: p.device, payload: encodeAckedEvent(p.messageIds) }));
    if (notices.length > 0) {
      try {
        await opts.fanout.publish(notices);
      } catch (err) {
        opts.log.warn({ err, events: notices.length }, "ack notice publish failed");
      }
    }
  }

  return {
    ack(device, messageIds, notify) {
      if (messageIds.length === 0) return Promise.resolve(0);
      if (closing)
        return Promise.reject(
          new AppError(Code.Unavailable, "SHUTTING_DOWN", "this instance is shutting down"),
        );
      return new Promise<number>((resolve, reject) => {
        queue.push({ device, messageIds, notify, resolve, reject });
        queuedIds += messageIds.length;
        // A free lane with a batch in hand starts at once; otherwise wait for company.
        if (running >= LANES) return; // a finishing batch takes the queue next
        schedule();
      });
    },
    async close() {
      closing = true;
      kick();
      if (running === 0 && queue.length === 0) return;
      await new Promise<void>((resolve) => {
        idle = resolve;
      });
    },
  };
}
