import { newEnvelope, EnvelopeType, type Envelope } from "@switchboard/proto";
import type { QueuedMessage, QueueInsert } from "@switchboard/storage";
import type { Franker } from "./franking.js";

/** Bits of the `flags` column. */
export const FLAG_URGENT = 1;
export const FLAG_FORWARDED = 2;
/** A held message request (never streamed until accepted); see `QUEUE_FLAG_HELD` in storage. */
export const FLAG_HELD = 16;
/** From an account the recipient had no relationship with: `Envelope.message_request`. */
export const FLAG_REQUEST = 32;
/** Sent with `no_delivery_receipt`: acknowledging it queues no SERVER_DELIVERY_RECEIPT. */
export const FLAG_NO_RECEIPT = 64;

/** Packs envelope booleans into the `flags` column. */
export const packFlags = (urgent: boolean, forwarded: boolean): number =>
  (urgent ? FLAG_URGENT : 0) | (forwarded ? FLAG_FORWARDED : 0);

const EMPTY = new Uint8Array(0);

/**
 * Maps a stored queue row (or one about to be stored, with its seq) to the wire Envelope. With a
 * `franker`, a row with a franking commitment (`report_tag`) gets its server franking tag.
 */
export function queuedMessageToEnvelope(
  row: QueuedMessage | (QueueInsert & { seq: number }),
  franker?: Franker,
): Envelope {
  return newEnvelope({
    id: row.message_id,
    clientMessageId: row.client_message_id,
    type: row.type,
    source:
      row.source_account_id === null
        ? undefined
        : { accountId: row.source_account_id, deviceId: row.source_device_id ?? 0 },
    sourceApp: row.source_app,
    sourceProviderId: row.source_provider_id,
    sourceRegistrationId: row.source_registration_id,
    destination: { accountId: row.account_id, deviceId: row.device_id },
    destinationApp: row.app,
    content: row.content ?? EMPTY,
    serverTimestampMs: BigInt(row.server_timestamp_ms),
    clientTimestampMs: BigInt(row.client_timestamp_ms),
    ephemeral: false,
    urgent: (row.flags & FLAG_URGENT) !== 0,
    groupId: row.group_id ?? "",
    forwarded: (row.flags & FLAG_FORWARDED) !== 0,
    reportTag: row.report_tag ?? EMPTY,
    sequence: BigInt(row.seq),
    serverFrankingTag:
      franker && row.report_tag
        ? franker.tag({
            commitment: row.report_tag,
            sourceAccountId: row.source_account_id ?? "",
            sourceDeviceId: row.source_account_id === null ? 0 : (row.source_device_id ?? 0),
            destinationAccountId: row.account_id,
            serverTimestampMs: Number(row.server_timestamp_ms),
            messageId: row.message_id,
          })
        : EMPTY,
    messageRequest: (row.flags & FLAG_REQUEST) !== 0,
  });
}

/**
 * True for the acknowledged rows a server delivery receipt is generated for: identified
 * one-to-one messages from another account whose sender did not opt out (`no_delivery_receipt`).
 */
export function wantsDeliveryReceipt(row: {
  type: number;
  source_account_id: string | null;
  account_id: string;
  group_id: string | null;
  flags: number;
}): boolean {
  return (
    (row.flags & FLAG_NO_RECEIPT) === 0 &&
    row.type !== (EnvelopeType.SERVER_DELIVERY_RECEIPT as number) &&
    row.type !== (EnvelopeType.SEALED_SENDER as number) &&
    row.source_account_id !== null &&
    row.source_account_id !== row.account_id &&
    row.group_id === null
  );
}
