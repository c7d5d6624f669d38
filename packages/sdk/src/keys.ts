// Key generation and conversion between libsignal records and the delivery API's key messages.
import { randomBytes, randomInt } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  IdentityKeyPair,
  KEMKeyPair,
  KEMPublicKey,
  KyberPreKeyRecord,
  PreKeyBundle as SignalPreKeyBundle,
  PreKeyRecord,
  PrivateKey,
  PublicKey,
  SignedPreKeyRecord,
} from "@signalapp/libsignal-client";
import { AppError, Code } from "@switchboard/errors";
import { EcPreKeySchema, SignedPreKeySchema } from "@switchboard/proto";
import type { EcPreKey, PreKeyBundle, SignedPreKey } from "@switchboard/proto";

/** Largest key id; ids wrap around to 1 after it (Signal uses 24-bit ids). */
export const MAX_KEY_ID = 0xffffff;

/** A random Signal registration id in 1..16380. */
export function generateRegistrationId(): number {
  return randomInt(1, 16381);
}

/** A random device password: 32 random bytes, base64url (43 characters). */
export function generatePassword(): string {
  return randomBytes(32).toString("base64url");
}

/** The id after `id`, wrapping from MAX_KEY_ID to 1. */
export function nextKeyId(id: number): number {
  return id >= MAX_KEY_ID ? 1 : id + 1;
}

/** A new identity key pair. */
export function generateIdentityKeyPair(): IdentityKeyPair {
  return IdentityKeyPair.generate();
}

/** A one-time EC pre-key. */
export function generatePreKey(id: number): PreKeyRecord {
  const priv = PrivateKey.generate();
  return PreKeyRecord.new(id, priv.getPublicKey(), priv);
}

/** A signed EC pre-key: the identity key signs the serialized public key. */
export function generateSignedPreKey(
  identity: IdentityKeyPair,
  id: number,
  nowMs: number,
): SignedPreKeyRecord {
  const priv = PrivateKey.generate();
  const pub = priv.getPublicKey();
  return SignedPreKeyRecord.new(id, nowMs, pub, priv, identity.privateKey.sign(pub.serialize()));
}

/** A signed Kyber-1024 pre-key (one-time or last-resort; the record is the same). */
export function generateKyberPreKey(identity: IdentityKeyPair, id: number, nowMs: number): KyberPreKeyRecord {
  const pair = KEMKeyPair.generate();
  return KyberPreKeyRecord.new(id, nowMs, pair, identity.privateKey.sign(pair.getPublicKey().serialize()));
}

/** A one-time EC pre-key as uploaded (public half only). */
export function preKeyToProto(record: PreKeyRecord): EcPreKey {
  return create(EcPreKeySchema, { keyId: record.id(), publicKey: record.publicKey().serialize() });
}

/** A signed EC or Kyber pre-key as uploaded: id, public key and identity-key signature. */
export function signedPreKeyToProto(record: SignedPreKeyRecord | KyberPreKeyRecord): SignedPreKey {
  return create(SignedPreKeySchema, {
    keyId: record.id(),
    publicKey: record.publicKey().serialize(),
    signature: record.signature(),
  });
}

function copy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out;
}

/**
 * Converts a delivery-API bundle into libsignal's. Fails INVALID_ARGUMENT (INVALID_PRE_KEY_BUNDLE)
 * when the signed pre-key or the Kyber pre-key is missing or a key does not parse.
 */
export function bundleFromProto(bundle: PreKeyBundle): SignalPreKeyBundle {
  const { signedPreKey, kyberPreKey, oneTimePreKey } = bundle;
  if (signedPreKey === undefined || kyberPreKey === undefined) {
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_PRE_KEY_BUNDLE",
      `bundle of device ${bundle.deviceId} lacks a signed or Kyber pre-key`,
    );
  }
  try {
    return SignalPreKeyBundle.new(
      bundle.registrationId,
      bundle.deviceId,
      oneTimePreKey === undefined ? null : oneTimePreKey.keyId,
      oneTimePreKey === undefined ? null : PublicKey.deserialize(copy(oneTimePreKey.publicKey)),
      signedPreKey.keyId,
      PublicKey.deserialize(copy(signedPreKey.publicKey)),
      copy(signedPreKey.signature),
      PublicKey.deserialize(copy(bundle.identityKey)),
      kyberPreKey.keyId,
      KEMPublicKey.deserialize(copy(kyberPreKey.publicKey)),
      copy(kyberPreKey.signature),
    );
  } catch (err) {
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_PRE_KEY_BUNDLE",
      `bundle of device ${bundle.deviceId} does not parse`,
      { cause: err },
    );
  }
}
