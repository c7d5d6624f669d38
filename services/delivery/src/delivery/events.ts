import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { deliveryInternal, EnvelopeType, type Envelope } from "@switchboard/proto";
import {
  encodeEnvelopeRow,
  peekEnvelopeField1,
  type EnvelopeRow,
  type EnvelopeSummary,
} from "../domain/envelope-wire.js";
import type { Franker } from "../domain/franking.js";

const { FanoutEventSchema } = deliveryInternal;

/** Payloads larger than this travel as a wake-up only; the stream reads them from PostgreSQL. */
export const MAX_INLINE_CONTENT_BYTES = 16 * 1024;

/** An event on a device's fan-out channel, decoded. */
export type DeviceEvent =
  | {
      kind: "message";
      /** The envelope's routing fields. */
      envelope: EnvelopeSummary;
      /** The content is in the event (else it is a wake-up: read the row). */
      inline: boolean;
      /** The event itself: field 1 is the envelope, so it is also a ConnectResponse delivery. */
      wire: Uint8Array;
    }
  | { kind: "displace"; subscriptionId: string; createdAtMs: number }
  | { kind: "acked"; messageIds: string[] }
  | { kind: "removed" };

/** Encodes a committed (or ephemeral) envelope, dropping large content to a wake-up. */
export function encodeMessageEvent(envelope: Envelope): Uint8Array {
  const message =
    envelope.content.byteLength > MAX_INLINE_CONTENT_BYTES
      ? { ...envelope, content: new Uint8Array(0) }
      : envelope;
  return toBinary(
    FanoutEventSchema,
    create(FanoutEventSchema, { event: { case: "message", value: message } }),
  );
}

/**
 * Encodes the event of a committed queue row straight from the row (the hot path: no Envelope
 * object, no reflection), byte for byte what {@link encodeMessageEvent} writes for
 * `queuedMessageToEnvelope(row, franker)`.
 */
export const encodeQueuedMessageEvent = (row: EnvelopeRow, franker?: Franker): Uint8Array =>
  encodeEnvelopeRow(row, { franker, asField1: true, maxContentBytes: MAX_INLINE_CONTENT_BYTES });

/** Encodes a displacement notice. */
export const encodeDisplaceEvent = (subscriptionId: string, createdAtMs: number): Uint8Array =>
  toBinary(
    FanoutEventSchema,
    create(FanoutEventSchema, {
      event: { case: "displace", value: { subscriptionId, createdAtMs: BigInt(createdAtMs) } },
    }),
  );

/** Encodes an acknowledgement notice. */
export const encodeAckedEvent = (messageIds: string[]): Uint8Array =>
  toBinary(FanoutEventSchema, create(FanoutEventSchema, { event: { case: "acked", value: { messageIds } } }));

/** Encodes a device-removed notice. */
export const encodeRemovedEvent = (): Uint8Array =>
  toBinary(FanoutEventSchema, create(FanoutEventSchema, { event: { case: "deviceRemoved", value: {} } }));

/** Decodes an event; returns undefined for bytes that are not one (logged by the caller). */
export function decodeDeviceEvent(payload: Uint8Array): DeviceEvent | undefined {
  // Message events (nearly all of them) are read without decoding the whole envelope.
  const summary = peekEnvelopeField1(payload);
  if (summary) return { kind: "message", envelope: summary, inline: isInline(summary), wire: payload };
  let ev;
  try {
    ev = fromBinary(FanoutEventSchema, payload);
  } catch {
    return undefined;
  }
  switch (ev.event.case) {
    case "message": {
      const envelope = summarize(ev.event.value);
      return {
        kind: "message",
        envelope,
        inline: isInline(envelope),
        wire: toBinary(FanoutEventSchema, create(FanoutEventSchema, { event: ev.event })),
      };
    }
    case "displace":
      return {
        kind: "displace",
        subscriptionId: ev.event.value.subscriptionId,
        createdAtMs: Number(ev.event.value.createdAtMs),
      };
    case "acked":
      return { kind: "acked", messageIds: ev.event.value.messageIds };
    case "deviceRemoved":
      return { kind: "removed" };
    default:
      return undefined;
  }
}

/** A receipt carries no content: its event is complete without it. */
const isInline = (e: EnvelopeSummary): boolean =>
  e.contentBytes > 0 || e.type === (EnvelopeType.SERVER_DELIVERY_RECEIPT as number);

const summarize = (e: Envelope): EnvelopeSummary => ({
  id: e.id,
  type: e.type,
  contentBytes: e.content.byteLength,
  serverTimestampMs: Number(e.serverTimestampMs),
  ephemeral: e.ephemeral,
  sequence: Number(e.sequence),
});
