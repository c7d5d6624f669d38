// Delivery verification: every acknowledged (Sent) message reaches each recipient device exactly
// once after de-duplication by envelope id, and in the order the sender's sends completed.

/** How a received message was classified. */
export type ReceiveVerdict =
  /** First delivery of this message to this device; `sentAt` is what {@link Verifier.issued} got. */
  | { kind: "first"; sentAt: number; complete: boolean }
  /** The same envelope again (redelivery of an unacknowledged message): dropped, and fine. */
  | { kind: "redelivery" }
  /** The same message again under another envelope id: an application-level duplicate. */
  | { kind: "duplicate" }
  /** Not a message of this run for this device. */
  | { kind: "misrouted" }
  | { kind: "unknown" };

/** One example of a problem, for the report. */
export interface VerifierExample {
  sender: number;
  seq: number;
  device: number;
  envelopeId?: string;
}

/** The verdict over a whole run. Every count but the informational ones must be 0. */
export interface VerificationReport {
  /** Sends issued, confirmed Sent, failed (error or non-Sent outcome), and still without a result. */
  sends: { issued: number; confirmed: number; failed: number; unresolved: number };
  /** Recipient-device deliveries owed for confirmed sends. */
  expectedDeliveries: number;
  /** Of those, delivered (first delivery per device). */
  delivered: number;
  /** Owed deliveries that never arrived. Must be 0. */
  lost: number;
  /** A message delivered again to a device under a different envelope id. Must be 0. */
  duplicates: number;
  /** A confirmed message delivered after one its sender issued once it was confirmed. Must be 0. */
  reordered: number;
  /** One envelope id used for two different messages (a client would drop the second). Must be 0. */
  idCollisions: number;
  /** Delivered to a device that was not a recipient. Must be 0. */
  misrouted: number;
  /** Content without a valid header of this run, or naming a message never issued. Must be 0. */
  unrecognized: number;
  /** Server delivery receipts for this run's sends that asked for none (`--server-receipts off`). Must be 0. */
  unwantedReceipts: number;
  /** Informational: redeliveries of an envelope already seen by the device (dropped by de-duplication). */
  redeliveries: number;
  /** Informational: deliveries of sends that failed or never got a result (they may have committed). */
  unconfirmedDeliveries: number;
  /** Informational: messages of an earlier run left in a reused population's queues. */
  earlierRunDeliveries: number;
  /** Up to a few examples of each problem. */
  examples: {
    lost: VerifierExample[];
    duplicates: VerifierExample[];
    reordered: VerifierExample[];
    idCollisions: VerifierExample[];
    misrouted: VerifierExample[];
  };
  /** True when every must-be-0 count is 0. */
  passed: boolean;
}

const PENDING = 0;
const CONFIRMED = 1;
const FAILED = 2;

interface MessageRecord {
  readonly recipients: readonly number[];
  /** Lazily built index of `recipients` for large groups. */
  index: Map<number, number> | undefined;
  /** Envelope id of the first delivery to each recipient (same order as `recipients`). */
  readonly got: Array<string | undefined>;
  gotCount: number;
  state: number;
  readonly sentAt: number;
}

const SENDER_LIMIT = 1 << 21;
// Keys combining two numbers below 2^21 and 2^32: exact in a double (< 2^53).
const pairKey = (high: number, low: number) => high * 4294967296 + low;

/**
 * Tracks every message of a run. Feed it `issued` for each send (before the payload goes out),
 * `confirmed` or `failed` for its result, and `received` for each delivery; `report()` at the end.
 *
 * Order rule: a message carries its sender's watermark — every send of that sender up to the
 * watermark had its result before this message was issued. If a message is delivered to a device
 * after another message of the same sender whose watermark covers it, and it was confirmed Sent,
 * the server delivered it out of order (the protocol promises per-sender order for sends that
 * completed before the next was issued). With one send in flight per sender this is plain
 * "sequence numbers increase"; with more, concurrent sends are not held to an order.
 */
export class Verifier {
  private readonly senders = new Map<number, Array<MessageRecord | undefined>>();
  /** (device, sender) -> highest watermark delivered so far. */
  private readonly watermarks = new Map<number, number>();
  /** envelope id -> (sender, seq) key of the message it first named. */
  private readonly envelopeIds = new Map<string, number>();
  private readonly reorderSuspects: VerifierExample[] = [];
  private readonly maxExamples: number;
  private issuedCount = 0;
  private confirmedCount = 0;
  private failedCount = 0;
  private outstandingCount = 0;
  private duplicates = 0;
  private idCollisions = 0;
  private misrouted = 0;
  private unrecognized = 0;
  private unwantedReceipts = 0;
  private redeliveries = 0;
  private earlierRun = 0;
  private readonly examples: VerificationReport["examples"] = {
    lost: [],
    duplicates: [],
    reordered: [],
    idCollisions: [],
    misrouted: [],
  };

  constructor(opts: { maxExamples?: number } = {}) {
    this.maxExamples = opts.maxExamples ?? 10;
  }

  /** Registers a send before it goes out. `sentAt` is returned with its first deliveries. */
  issued(sender: number, seq: number, recipients: readonly number[], sentAt: number): void {
    if (sender < 0 || sender >= SENDER_LIMIT) throw new RangeError(`sender index ${sender} out of range`);
    let log = this.senders.get(sender);
    if (!log) {
      log = [];
      this.senders.set(sender, log);
    }
    if (log[seq] !== undefined) throw new Error(`message ${sender}/${seq} issued twice`);
    log[seq] = {
      recipients,
      index: undefined,
      got: new Array<string | undefined>(recipients.length),
      gotCount: 0,
      state: PENDING,
      sentAt,
    };
    this.issuedCount++;
  }

  /**
   * The send was acknowledged Sent: each recipient device is now owed one delivery. Returns
   * whether every recipient already has it (deliveries can overtake the result).
   */
  confirmed(sender: number, seq: number): boolean {
    const r = this.record(sender, seq);
    if (!r || r.state !== PENDING) return false;
    r.state = CONFIRMED;
    this.confirmedCount++;
    this.outstandingCount += r.recipients.length - r.gotCount;
    return r.gotCount === r.recipients.length;
  }

  /** The send failed (or had a non-Sent outcome). Its deliveries, if any, are not owed. */
  failed(sender: number, seq: number): void {
    const r = this.record(sender, seq);
    if (!r || r.state !== PENDING) return;
    r.state = FAILED;
    this.failedCount++;
  }

  /** Classifies one delivery of message (sender, seq) with `watermark` to `device`. */
  received(
    device: number,
    envelopeId: string,
    sender: number,
    seq: number,
    watermark: number,
  ): ReceiveVerdict {
    const r = this.record(sender, seq);
    if (!r) {
      this.unrecognized++;
      return { kind: "unknown" };
    }
    const i = this.recipientIndex(r, device);
    if (i < 0) {
      this.misrouted++;
      this.example("misrouted", { sender, seq, device, envelopeId });
      return { kind: "misrouted" };
    }
    const msgKey = pairKey(sender, seq);
    const owner = this.envelopeIds.get(envelopeId);
    if (owner === undefined) this.envelopeIds.set(envelopeId, msgKey);
    else if (owner !== msgKey) {
      this.idCollisions++;
      this.example("idCollisions", { sender, seq, device, envelopeId });
      return { kind: "duplicate" };
    }
    const first = r.got[i];
    if (first !== undefined) {
      if (first === envelopeId) {
        this.redeliveries++;
        return { kind: "redelivery" };
      }
      this.duplicates++;
      this.example("duplicates", { sender, seq, device, envelopeId });
      return { kind: "duplicate" };
    }
    r.got[i] = envelopeId;
    r.gotCount++;
    if (r.state === CONFIRMED) this.outstandingCount--;
    const wk = pairKey(device, sender);
    const seen = this.watermarks.get(wk) ?? 0;
    if (seq <= seen) this.reorderSuspects.push({ sender, seq, device, envelopeId });
    if (watermark > seen) this.watermarks.set(wk, watermark);
    return {
      kind: "first",
      sentAt: r.sentAt,
      complete: r.state === CONFIRMED && r.gotCount === r.recipients.length,
    };
  }

  /** Counts content that is not a message of this run (no header, another run's id). */
  unrecognizedContent(): void {
    this.unrecognized++;
  }

  /** Counts a server delivery receipt for a send of this run that asked for none. */
  unwantedReceipt(): void {
    this.unwantedReceipts++;
  }

  /** Counts a message of an earlier run (a reused population's leftovers): not this run's concern. */
  earlierRunContent(): void {
    this.earlierRun++;
  }

  /** Deliveries owed for confirmed sends and not yet seen. */
  get outstanding(): number {
    return this.outstandingCount;
  }

  /** Sends without a result yet. */
  get unresolved(): number {
    return this.issuedCount - this.confirmedCount - this.failedCount;
  }

  /** The verdict so far (call after draining). */
  report(): VerificationReport {
    let expected = 0;
    let delivered = 0;
    let lost = 0;
    let unconfirmed = 0;
    const lostExamples: VerifierExample[] = [];
    for (const [sender, log] of this.senders) {
      for (let seq = 1; seq < log.length; seq++) {
        const r = log[seq];
        if (!r) continue;
        if (r.state !== CONFIRMED) {
          unconfirmed += r.gotCount;
          continue;
        }
        expected += r.recipients.length;
        delivered += r.gotCount;
        if (r.gotCount === r.recipients.length) continue;
        for (let i = 0; i < r.recipients.length; i++) {
          if (r.got[i] !== undefined) continue;
          lost++;
          if (lostExamples.length < this.maxExamples)
            lostExamples.push({ sender, seq, device: r.recipients[i] as number });
        }
      }
    }
    const reordered = this.reorderSuspects.filter((s) => this.record(s.sender, s.seq)?.state === CONFIRMED);
    const examples = {
      ...this.examples,
      lost: lostExamples,
      reordered: reordered.slice(0, this.maxExamples),
    };
    const report: Omit<VerificationReport, "passed"> = {
      sends: {
        issued: this.issuedCount,
        confirmed: this.confirmedCount,
        failed: this.failedCount,
        unresolved: this.unresolved,
      },
      expectedDeliveries: expected,
      delivered,
      lost,
      duplicates: this.duplicates,
      reordered: reordered.length,
      idCollisions: this.idCollisions,
      misrouted: this.misrouted,
      unrecognized: this.unrecognized,
      unwantedReceipts: this.unwantedReceipts,
      redeliveries: this.redeliveries,
      unconfirmedDeliveries: unconfirmed,
      earlierRunDeliveries: this.earlierRun,
      examples,
    };
    const passed =
      lost === 0 &&
      report.duplicates === 0 &&
      report.reordered === 0 &&
      report.idCollisions === 0 &&
      report.misrouted === 0 &&
      report.unrecognized === 0 &&
      report.unwantedReceipts === 0;
    return { ...report, passed };
  }

  private record(sender: number, seq: number): MessageRecord | undefined {
    return this.senders.get(sender)?.[seq];
  }

  private recipientIndex(r: MessageRecord, device: number): number {
    if (r.recipients.length <= 16) return r.recipients.indexOf(device);
    if (!r.index) r.index = new Map(r.recipients.map((d, i) => [d, i]));
    return r.index.get(device) ?? -1;
  }

  private example(kind: keyof VerificationReport["examples"], e: VerifierExample): void {
    const list = this.examples[kind];
    if (list.length < this.maxExamples) list.push(e);
  }
}
