import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { deliveryInternal, EnvelopeType, type Envelope } from "@switchboard/proto";

const { FanoutEventSchema } = deliveryInternal;

/** Payloads larger than this travel as a wake-up only; the stream reads them from PostgreSQL. */
export const MAX_INLINE_CONTENT_BYTES = 16 * 1024;

/** An event on a device's fan-out channel, decoded. */
export type DeviceEvent =
  | { kind: "message"; envelope: Envelope; inline: boolean }
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
  let ev;
  try {
    ev = fromBinary(FanoutEventSchema, payload);
  } catch {
    return undefined;
  }
  switch (ev.event.case) {
    case "message": {
      const envelope = ev.event.value;
      const inline =
        envelope.content.byteLength > 0 || envelope.type === EnvelopeType.SERVER_DELIVERY_RECEIPT;
      return { kind: "message", envelope, inline };
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
