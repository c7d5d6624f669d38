// Safety features on the client side: message franking (so a recipient can report a message
// with proof) and helpers for sealed sender (unidentified access keys).
import { createHmac, randomBytes } from "node:crypto";
import { clone, toBinary } from "@bufbuild/protobuf";
// The package root does not re-export zkgroup, and its `zkgroup` entry has no NodeNext typings.
import { ProfileKey } from "@signalapp/libsignal-client/dist/zkgroup/index.js";
import { content } from "@switchboard/proto";

/** Bytes of a fresh franking key. */
export const FRANKING_KEY_BYTES = 32;

/**
 * The bytes a franking commitment covers: the DataMessage serialized with `franking_key`
 * cleared. Sender and recipient compute it the same way, so the recipient can reveal it in a
 * report (`ReportService.ReportMessage.plaintext`).
 */
export function frankedPlaintext(message: content.DataMessage): Uint8Array<ArrayBuffer> {
  const bare = clone(content.DataMessageSchema, message);
  bare.frankingKey = new Uint8Array(0);
  return new Uint8Array(toBinary(content.DataMessageSchema, bare));
}

/** The commitment HMAC-SHA256(franking key, franked plaintext), sent as `report_tag`. */
export function frankingCommitment(
  frankingKey: Uint8Array,
  message: content.DataMessage,
): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createHmac("sha256", frankingKey).update(frankedPlaintext(message)).digest());
}

/**
 * Franks an outgoing message: puts a fresh random franking key inside it (it travels end-to-end
 * encrypted) and returns the commitment for the envelope's `report_tag`.
 */
export function frankMessage(message: content.DataMessage): Uint8Array<ArrayBuffer> {
  message.frankingKey = new Uint8Array(randomBytes(FRANKING_KEY_BYTES));
  return frankingCommitment(message.frankingKey, message);
}

/**
 * The 16-byte unidentified access key derived from a 32-byte profile key (as Signal derives it).
 * Register it with `SwitchboardClient.setSealedSenderAccess` and share the profile key only with
 * contacts allowed to send sealed-sender messages; rotate the profile key to revoke them all.
 */
export function deriveAccessKey(profileKey: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = new Uint8Array(profileKey.byteLength);
  copy.set(profileKey);
  return new ProfileKey(copy).deriveAccessKey();
}

/** A fresh random 32-byte profile key. */
export const generateProfileKey = (): Uint8Array<ArrayBuffer> => new Uint8Array(randomBytes(32));
