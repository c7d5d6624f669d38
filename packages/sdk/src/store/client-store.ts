// The storage a client needs: libsignal's protocol stores plus the SDK's own state, and an
// in-memory implementation over StoreData that the file store reuses.
import {
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  PublicKey,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from "@signalapp/libsignal-client";
import type { Direction, PrivateKey, ProtocolAddress, Uuid } from "@signalapp/libsignal-client";
import { AppError, Code } from "@switchboard/errors";
import {
  createEmptyStoreData,
  fromBase64,
  toBase64,
  type GroupState,
  type KeyState,
  type LocalDevice,
  type PendingContent,
  type StoreData,
} from "./store-data.js";

/** libsignal's SessionStore plus what the SDK needs to manage device lists. */
export interface SdkSessionStore extends SessionStore {
  /** Deletes the session with one device (no-op when there is none). */
  deleteSession(address: ProtocolAddress): Promise<void>;
  /** Device ids of an account that this device holds sessions with, ascending. */
  getDeviceIds(accountId: string): Promise<number[]>;
  /** Accounts (this one included) that this device holds at least one session with. */
  getAccountIds(): Promise<string[]>;
}

/** libsignal's SignedPreKeyStore plus listing and removal, for rotation. */
export interface SdkSignedPreKeyStore extends SignedPreKeyStore {
  /** Stored signed pre-keys with their creation time (ms since epoch). */
  listSignedPreKeys(): Promise<{ id: number; createdAtMs: number }[]>;
  /** Removes one signed pre-key (no-op when unknown). */
  removeSignedPreKey(id: number): Promise<void>;
}

/** libsignal's KyberPreKeyStore plus last-resort bookkeeping. */
export interface SdkKyberPreKeyStore extends KyberPreKeyStore {
  /** Saves a Kyber pre-key; `lastResort` keys survive use (replays are still rejected). */
  saveKyberPreKey(id: number, record: KyberPreKeyRecord, options?: { lastResort?: boolean }): Promise<void>;
  /** Stored Kyber pre-keys with their kind and creation time (ms since epoch). */
  listKyberPreKeys(): Promise<{ id: number; lastResort: boolean; createdAtMs: number }[]>;
  /** Removes one Kyber pre-key (no-op when unknown). */
  removeKyberPreKey(id: number): Promise<void>;
}

/** Identifies a processed envelope for de-duplication. */
export interface ProcessedRef {
  /** Envelope.id, the server's message id. */
  serverId: string;
  /** `<accountId>.<deviceId>|<client_message_id>` of the sender, when the envelope has both. */
  senderClientId?: string;
}

/** The SDK's own state: local device, key counters, de-duplication, groups, pending deliveries. */
export interface ClientStateStore {
  getLocalDevice(): Promise<LocalDevice | undefined>;
  setLocalDevice(device: LocalDevice): Promise<void>;
  getKeyState(): Promise<KeyState>;
  setKeyState(state: KeyState): Promise<void>;
  /** True when an envelope with this server id, or this sender's client message id, was processed. */
  isProcessed(ref: ProcessedRef): Promise<boolean>;
  /** Records a processed envelope; old entries are pruned beyond the store's capacity. */
  markProcessed(ref: ProcessedRef, atMs: number): Promise<void>;
  getGroup(groupId: string): Promise<GroupState | undefined>;
  setGroup(groupId: string, state: GroupState): Promise<void>;
  /** Ids of every group this device keeps state for. */
  listGroupIds(): Promise<string[]>;
  /** This account's other device ids as last seen (the local device excluded). */
  getOwnDeviceIds(): Promise<number[]>;
  setOwnDeviceIds(deviceIds: number[]): Promise<void>;
  /** Decrypted contents not yet handed to the application, oldest first. */
  listPending(): Promise<PendingContent[]>;
  addPending(item: PendingContent): Promise<void>;
  /** Removes the pending item whose envelope has this server id. */
  removePending(serverId: string): Promise<void>;
  /**
   * Decrypted previews of held message requests, oldest first. A held envelope is decrypted once
   * (its ratchet step is spent); the kept plaintext stands in for it when it is delivered again
   * after acceptance.
   */
  listHeld(): Promise<PendingContent[]>;
  /** The kept preview of the held envelope with this server id, if any. */
  findHeld(serverId: string): Promise<PendingContent | undefined>;
  /** Keeps a preview (replacing one with the same server id); the oldest are pruned beyond capacity. */
  addHeld(item: PendingContent): Promise<void>;
  /** Removes the kept preview with this server id (no-op when there is none). */
  removeHeld(serverId: string): Promise<void>;
}

/**
 * Everything a client persists. `flush()` makes all changes so far durable (the client calls it
 * before sending ciphertext and before acknowledging an envelope); `close()` flushes and releases.
 */
export interface ClientStore {
  readonly session: SdkSessionStore;
  readonly identity: IdentityKeyStore;
  readonly preKey: PreKeyStore;
  readonly signedPreKey: SdkSignedPreKeyStore;
  readonly kyberPreKey: SdkKyberPreKeyStore;
  readonly senderKey: SenderKeyStore;
  readonly state: ClientStateStore;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Options of the built-in stores. */
export interface StoreOptions {
  /** De-duplication entries kept (server ids and client ids each); oldest are pruned. Default 20,000. */
  maxProcessedEntries?: number;
}

const DEFAULT_MAX_PROCESSED = 20_000;
const MAX_USED_LAST_RESORT = 10_000;
/**
 * Kept previews of held requests. The delivery service lists at most 100 senders with 50
 * envelopes each; beyond this the oldest go (their envelopes then fail to decrypt if accepted).
 */
const MAX_HELD = 5_000;

/** `<accountId>.<deviceId>`: the key of per-device records. */
export function addressKey(address: ProtocolAddress): string {
  return `${address.name()}.${address.deviceId()}`;
}

function missing(kind: string, id: number): AppError {
  return new AppError(Code.NotFound, "KEY_NOT_FOUND", `${kind} ${id} not found`);
}

function pruneOldest(entries: Record<string, number>, max: number): void {
  const keys = Object.keys(entries);
  if (keys.length <= max) return;
  keys.sort((a, b) => (entries[a] ?? 0) - (entries[b] ?? 0));
  for (const key of keys.slice(0, keys.length - max)) delete entries[key];
}

class DataSessionStore extends SessionStore implements SdkSessionStore {
  constructor(private readonly d: StoreData) {
    super();
  }
  async saveSession(address: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.d.sessions[addressKey(address)] = toBase64(record.serialize());
  }
  async getSession(address: ProtocolAddress): Promise<SessionRecord | null> {
    const stored = this.d.sessions[addressKey(address)];
    return stored === undefined ? null : SessionRecord.deserialize(fromBase64(stored));
  }
  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return addresses.map((address) => {
      const stored = this.d.sessions[addressKey(address)];
      if (stored === undefined)
        throw new AppError(Code.NotFound, "SESSION_NOT_FOUND", `no session with ${addressKey(address)}`);
      return SessionRecord.deserialize(fromBase64(stored));
    });
  }
  async deleteSession(address: ProtocolAddress): Promise<void> {
    delete this.d.sessions[addressKey(address)];
  }
  async getDeviceIds(accountId: string): Promise<number[]> {
    const prefix = `${accountId}.`;
    return Object.keys(this.d.sessions)
      .filter((key) => key.startsWith(prefix))
      .map((key) => Number(key.slice(prefix.length)))
      .sort((a, b) => a - b);
  }
  async getAccountIds(): Promise<string[]> {
    return [...new Set(Object.keys(this.d.sessions).map((key) => key.slice(0, key.lastIndexOf("."))))];
  }
}

class DataIdentityStore extends IdentityKeyStore {
  constructor(private readonly d: StoreData) {
    super();
  }
  private local(): LocalDevice {
    if (this.d.local === undefined)
      throw new AppError(Code.FailedPrecondition, "NOT_INITIALIZED", "no local identity yet");
    return this.d.local;
  }
  async getIdentityKey(): Promise<PrivateKey> {
    return IdentityKeyPair.deserialize(fromBase64(this.local().identityKeyPair)).privateKey;
  }
  override async getIdentityKeyPair(): Promise<IdentityKeyPair> {
    return IdentityKeyPair.deserialize(fromBase64(this.local().identityKeyPair));
  }
  async getLocalRegistrationId(): Promise<number> {
    return this.local().registrationId;
  }
  async saveIdentity(address: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const k = addressKey(address);
    const previous = this.d.identities[k];
    const next = toBase64(key.serialize());
    this.d.identities[k] = next;
    return previous !== undefined && previous !== next
      ? IdentityChange.ReplacedExisting
      : IdentityChange.NewOrUnchanged;
  }
  // Trust on first use; a changed key is accepted and surfaced by the client as an identity change.
  async isTrustedIdentity(
    _address: ProtocolAddress,
    _key: PublicKey,
    _direction: Direction,
  ): Promise<boolean> {
    return true;
  }
  async getIdentity(address: ProtocolAddress): Promise<PublicKey | null> {
    const stored = this.d.identities[addressKey(address)];
    return stored === undefined ? null : PublicKey.deserialize(fromBase64(stored));
  }
}

class DataPreKeyStore extends PreKeyStore {
  constructor(private readonly d: StoreData) {
    super();
  }
  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.d.preKeys[id] = toBase64(record.serialize());
  }
  async getPreKey(id: number): Promise<PreKeyRecord> {
    const stored = this.d.preKeys[id];
    if (stored === undefined) throw missing("pre-key", id);
    return PreKeyRecord.deserialize(fromBase64(stored));
  }
  async removePreKey(id: number): Promise<void> {
    delete this.d.preKeys[id];
  }
}

class DataSignedPreKeyStore extends SignedPreKeyStore implements SdkSignedPreKeyStore {
  constructor(private readonly d: StoreData) {
    super();
  }
  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.d.signedPreKeys[id] = { record: toBase64(record.serialize()), createdAtMs: record.timestamp() };
  }
  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const stored = this.d.signedPreKeys[id];
    if (stored === undefined) throw missing("signed pre-key", id);
    return SignedPreKeyRecord.deserialize(fromBase64(stored.record));
  }
  async listSignedPreKeys(): Promise<{ id: number; createdAtMs: number }[]> {
    return Object.entries(this.d.signedPreKeys).map(([id, v]) => ({
      id: Number(id),
      createdAtMs: v.createdAtMs,
    }));
  }
  async removeSignedPreKey(id: number): Promise<void> {
    delete this.d.signedPreKeys[id];
  }
}

class DataKyberPreKeyStore extends KyberPreKeyStore implements SdkKyberPreKeyStore {
  constructor(private readonly d: StoreData) {
    super();
  }
  async saveKyberPreKey(
    id: number,
    record: KyberPreKeyRecord,
    options: { lastResort?: boolean } = {},
  ): Promise<void> {
    this.d.kyberPreKeys[id] = {
      record: toBase64(record.serialize()),
      lastResort: options.lastResort ?? false,
      createdAtMs: record.timestamp(),
    };
  }
  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const stored = this.d.kyberPreKeys[id];
    if (stored === undefined) throw missing("kyber pre-key", id);
    return KyberPreKeyRecord.deserialize(fromBase64(stored.record));
  }
  // One-time keys are deleted on use. A last-resort key stays, but each (key, signed pre-key,
  // base key) triple may be used once: a repeat is a replayed pre-key message.
  async markKyberPreKeyUsed(id: number, signedPreKeyId: number, baseKey: PublicKey): Promise<void> {
    const stored = this.d.kyberPreKeys[id];
    if (stored === undefined) throw missing("kyber pre-key", id);
    if (!stored.lastResort) {
      delete this.d.kyberPreKeys[id];
      return;
    }
    const use = `${id}:${signedPreKeyId}:${toBase64(baseKey.serialize())}`;
    if (this.d.usedLastResortKyber[use] !== undefined) {
      throw new AppError(
        Code.FailedPrecondition,
        "KYBER_PRE_KEY_REUSED",
        `last-resort kyber pre-key ${id} reused`,
      );
    }
    this.d.usedLastResortKyber[use] = Date.now();
    pruneOldest(this.d.usedLastResortKyber, MAX_USED_LAST_RESORT);
  }
  async listKyberPreKeys(): Promise<{ id: number; lastResort: boolean; createdAtMs: number }[]> {
    return Object.entries(this.d.kyberPreKeys).map(([id, v]) => ({
      id: Number(id),
      lastResort: v.lastResort,
      createdAtMs: v.createdAtMs,
    }));
  }
  async removeKyberPreKey(id: number): Promise<void> {
    delete this.d.kyberPreKeys[id];
  }
}

class DataSenderKeyStore extends SenderKeyStore {
  constructor(private readonly d: StoreData) {
    super();
  }
  async saveSenderKey(sender: ProtocolAddress, distributionId: Uuid, record: SenderKeyRecord): Promise<void> {
    this.d.senderKeys[`${addressKey(sender)}|${distributionId}`] = toBase64(record.serialize());
  }
  async getSenderKey(sender: ProtocolAddress, distributionId: Uuid): Promise<SenderKeyRecord | null> {
    const stored = this.d.senderKeys[`${addressKey(sender)}|${distributionId}`];
    return stored === undefined ? null : SenderKeyRecord.deserialize(fromBase64(stored));
  }
}

class DataStateStore implements ClientStateStore {
  constructor(
    private readonly d: StoreData,
    private readonly maxProcessed: number,
  ) {}
  async getLocalDevice(): Promise<LocalDevice | undefined> {
    return this.d.local === undefined ? undefined : { ...this.d.local };
  }
  async setLocalDevice(device: LocalDevice): Promise<void> {
    this.d.local = { ...device };
  }
  async getKeyState(): Promise<KeyState> {
    return { ...this.d.keyState };
  }
  async setKeyState(state: KeyState): Promise<void> {
    this.d.keyState = { ...state };
  }
  async isProcessed(ref: ProcessedRef): Promise<boolean> {
    if (this.d.processedServerIds[ref.serverId] !== undefined) return true;
    return ref.senderClientId !== undefined && this.d.processedClientIds[ref.senderClientId] !== undefined;
  }
  async markProcessed(ref: ProcessedRef, atMs: number): Promise<void> {
    this.d.processedServerIds[ref.serverId] = atMs;
    pruneOldest(this.d.processedServerIds, this.maxProcessed);
    if (ref.senderClientId !== undefined) {
      this.d.processedClientIds[ref.senderClientId] = atMs;
      pruneOldest(this.d.processedClientIds, this.maxProcessed);
    }
  }
  async getGroup(groupId: string): Promise<GroupState | undefined> {
    const g = this.d.groups[groupId];
    return g === undefined ? undefined : structuredClone(g);
  }
  async setGroup(groupId: string, state: GroupState): Promise<void> {
    this.d.groups[groupId] = structuredClone(state);
  }
  async listGroupIds(): Promise<string[]> {
    return Object.keys(this.d.groups);
  }
  async getOwnDeviceIds(): Promise<number[]> {
    return [...this.d.ownDeviceIds];
  }
  async setOwnDeviceIds(deviceIds: number[]): Promise<void> {
    this.d.ownDeviceIds = [...new Set(deviceIds)].sort((a, b) => a - b);
  }
  async listPending(): Promise<PendingContent[]> {
    return this.d.pending.map((p) => ({ ...p }));
  }
  async addPending(item: PendingContent): Promise<void> {
    this.d.pending.push({ ...item });
  }
  async removePending(serverId: string): Promise<void> {
    this.d.pending = this.d.pending.filter((p) => p.serverId !== serverId);
  }
  async listHeld(): Promise<PendingContent[]> {
    return this.d.held.map((p) => ({ ...p }));
  }
  async findHeld(serverId: string): Promise<PendingContent | undefined> {
    const found = this.d.held.find((p) => p.serverId === serverId);
    return found === undefined ? undefined : { ...found };
  }
  async addHeld(item: PendingContent): Promise<void> {
    this.d.held = [...this.d.held.filter((p) => p.serverId !== item.serverId), { ...item }].slice(-MAX_HELD);
  }
  async removeHeld(serverId: string): Promise<void> {
    this.d.held = this.d.held.filter((p) => p.serverId !== serverId);
  }
}

/**
 * A ClientStore over one StoreData object. `persist` receives the whole state on `flush()`;
 * the in-memory store passes a no-op, the file store an atomic file write.
 */
export class DataStore implements ClientStore {
  readonly session: SdkSessionStore;
  readonly identity: IdentityKeyStore;
  readonly preKey: PreKeyStore;
  readonly signedPreKey: SdkSignedPreKeyStore;
  readonly kyberPreKey: SdkKyberPreKeyStore;
  readonly senderKey: SenderKeyStore;
  readonly state: ClientStateStore;

  constructor(
    protected readonly data: StoreData,
    private readonly persist: (data: StoreData) => Promise<void>,
    options: StoreOptions = {},
  ) {
    this.session = new DataSessionStore(data);
    this.identity = new DataIdentityStore(data);
    this.preKey = new DataPreKeyStore(data);
    this.signedPreKey = new DataSignedPreKeyStore(data);
    this.kyberPreKey = new DataKyberPreKeyStore(data);
    this.senderKey = new DataSenderKeyStore(data);
    this.state = new DataStateStore(data, options.maxProcessedEntries ?? DEFAULT_MAX_PROCESSED);
  }

  async flush(): Promise<void> {
    await this.persist(this.data);
  }

  async close(): Promise<void> {
    await this.flush();
  }

  /** A deep copy of the whole state (JSON-serialisable), e.g. for backups or tests. */
  snapshot(): StoreData {
    return structuredClone(this.data);
  }
}

/**
 * Creates an in-memory ClientStore: nothing survives the process. Pass `data` (from a
 * `snapshot()`) to start from saved state.
 */
export function createMemoryStore(options: StoreOptions & { data?: StoreData } = {}): DataStore {
  return new DataStore(
    // Sections added after a snapshot was taken start empty.
    options.data === undefined
      ? createEmptyStoreData()
      : { ...createEmptyStoreData(), ...structuredClone(options.data) },
    async () => {},
    options,
  );
}
