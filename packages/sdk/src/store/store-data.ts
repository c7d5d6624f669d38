// The JSON-serialisable state behind the in-memory and file stores. Binary values are base64.

/** This device's own long-term secrets and, once registered, its address and password. */
export interface LocalDevice {
  /** Serialized libsignal IdentityKeyPair (base64). */
  identityKeyPair: string;
  /** Signal registration id, 1..16380. */
  registrationId: number;
  /** The device secret used in `Basic` credentials. */
  password: string;
  /** Set once the device is registered. */
  accountId?: string;
  /** Set once the device is registered. */
  deviceId?: number;
}

/** Counters and timestamps of this device's pre-keys. */
export interface KeyState {
  /** Next one-time EC pre-key id (1..0xFFFFFF, wraps). */
  nextPreKeyId: number;
  /** Next Kyber pre-key id (one-time and last-resort share the id space). */
  nextKyberPreKeyId: number;
  /** Next signed EC pre-key id. */
  nextSignedPreKeyId: number;
  /** The signed pre-key currently published, if any. */
  signedPreKeyId?: number;
  /** When the current signed pre-key (and last-resort Kyber key) was created, ms since epoch. */
  signedPreKeyCreatedAtMs?: number;
  /** The last-resort Kyber pre-key currently published, if any. */
  lastResortKyberPreKeyId?: number;
}

/** A group as this device last saw it, and who holds its current sender key. */
export interface GroupState {
  /** The libsignal distribution id (UUID) of this device's current sender key for the group. */
  distributionId: string;
  /** Group revision last seen. */
  revision: number;
  /** Member devices as last seen: account id → device id → registration id. */
  members: Record<string, Record<string, number>>;
  /** Addresses (`account.device`) holding the current sender key, with the registration id. */
  distributedTo: Record<string, number>;
}

/** Decrypted content persisted before the application saw it (crash-safe delivery). */
export interface PendingContent {
  /** Envelope.id. */
  serverId: string;
  /** Serialized Envelope with `content` cleared (base64). */
  envelope: string;
  /** Serialized (padded) Content plaintext (base64). */
  content: string;
  /** Sealed sender: the sender certificate that named the sender (base64), kept for reports. */
  senderCertificate?: string;
}

/** Everything a client store holds. */
export interface StoreData {
  version: 1;
  local: LocalDevice | undefined;
  identities: Record<string, string>;
  sessions: Record<string, string>;
  preKeys: Record<string, string>;
  signedPreKeys: Record<string, { record: string; createdAtMs: number }>;
  kyberPreKeys: Record<string, { record: string; lastResort: boolean; createdAtMs: number }>;
  usedLastResortKyber: Record<string, number>;
  senderKeys: Record<string, string>;
  keyState: KeyState;
  processedServerIds: Record<string, number>;
  processedClientIds: Record<string, number>;
  groups: Record<string, GroupState>;
  ownDeviceIds: number[];
  pending: PendingContent[];
  /**
   * Decrypted previews of held message requests (docs/safety.md), oldest first: decrypted once
   * by `previewMessageRequests`, handed to the application when the envelope (same server id)
   * arrives again after acceptance.
   */
  held: PendingContent[];
}

/** A fresh, empty state. */
export function createEmptyStoreData(): StoreData {
  return {
    version: 1,
    local: undefined,
    identities: {},
    sessions: {},
    preKeys: {},
    signedPreKeys: {},
    kyberPreKeys: {},
    usedLastResortKyber: {},
    senderKeys: {},
    keyState: { nextPreKeyId: 1, nextKyberPreKeyId: 1, nextSignedPreKeyId: 1 },
    processedServerIds: {},
    processedClientIds: {},
    groups: {},
    ownDeviceIds: [],
    pending: [],
    held: [],
  };
}

/** Standard base64 of bytes (how the stores keep binary values). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Bytes of a base64 string, in a fresh ArrayBuffer (what libsignal's deserializers take). */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const buf = Buffer.from(text, "base64");
  const out = new Uint8Array(buf.byteLength);
  out.set(buf);
  return out;
}
