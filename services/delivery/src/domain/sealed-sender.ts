// Sealed sender: sender certificates signed by a server certificate under the trust root, and the
// unidentified access key check. libsignal does the signing; nothing here touches the network.
import { createHash, timingSafeEqual } from "node:crypto";
import { PrivateKey, PublicKey, SenderCertificate, ServerCertificate } from "@signalapp/libsignal-client";

/** How long an issued sender certificate is valid. */
export const SENDER_CERTIFICATE_TTL_MS = 24 * 3600_000;
/** The id of the server certificate (key) this instance signs with. */
export const SERVER_CERTIFICATE_KEY_ID = 1;
/** Unidentified access keys are 16 bytes (as Signal derives them from a 32-byte profile key). */
export const ACCESS_KEY_BYTES = 16;

/** Issues and checks sender certificates. */
export interface CertificateAuthority {
  /** The trust root's serialized public key (33 bytes). */
  readonly trustRoot: Uint8Array;
  /** Issues a certificate for a device with its serialized identity public key. */
  issue(
    accountId: string,
    deviceId: number,
    identityKey: Uint8Array,
    nowMs: number,
  ): { certificate: Uint8Array; expiresAtMs: number };
  /**
   * Parses and validates a certificate this authority's trust root signed, valid at `atMs`.
   * Returns the sender it names, or undefined when it is malformed, forged or expired.
   */
  validate(certificate: Uint8Array, atMs: number): { accountId: string; deviceId: number } | undefined;
}

const copy = (b: Uint8Array): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(b.byteLength);
  out.set(b);
  return out;
};

/**
 * Creates the authority from the trust root and server private keys (serialized libsignal
 * PrivateKeys, 32 bytes each). The server certificate is signed once at start.
 */
export function createCertificateAuthority(keys: {
  trustRootKey: Uint8Array;
  serverKey: Uint8Array;
}): CertificateAuthority {
  const root = PrivateKey.deserialize(copy(keys.trustRootKey));
  const server = PrivateKey.deserialize(copy(keys.serverKey));
  const rootPublic = root.getPublicKey();
  const serverCertificate = ServerCertificate.new(SERVER_CERTIFICATE_KEY_ID, server.getPublicKey(), root);
  return {
    trustRoot: rootPublic.serialize(),
    issue(accountId, deviceId, identityKey, nowMs) {
      const expiresAtMs = nowMs + SENDER_CERTIFICATE_TTL_MS;
      const cert = SenderCertificate.new(
        accountId,
        null,
        deviceId,
        PublicKey.deserialize(copy(identityKey)),
        expiresAtMs,
        serverCertificate,
        server,
      );
      return { certificate: cert.serialize(), expiresAtMs };
    },
    validate(certificate, atMs) {
      try {
        const cert = SenderCertificate.deserialize(copy(certificate));
        if (!cert.validate(rootPublic, atMs)) return undefined;
        return { accountId: cert.senderUuid(), deviceId: cert.senderDeviceId() };
      } catch {
        // Malformed bytes are a forged certificate, not a server error.
        return undefined;
      }
    },
  };
}

/** The stored verifier of an access key: SHA-256 of it. */
export const accessKeyHash = (key: Uint8Array): Uint8Array =>
  new Uint8Array(createHash("sha256").update(key).digest());

/** Constant-time check of a presented access key against a stored verifier. */
export function accessKeyMatches(presented: Uint8Array, storedHash: Uint8Array | undefined): boolean {
  if (!storedHash) return false;
  const h = accessKeyHash(presented);
  return h.byteLength === storedHash.byteLength && timingSafeEqual(h, storedHash);
}

/** Generates a fresh serialized private key (trust root or server key). */
export const generatePrivateKey = (): Uint8Array => PrivateKey.generate().serialize();
