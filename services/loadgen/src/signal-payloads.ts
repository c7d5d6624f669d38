// Real end-to-end-encrypted payloads: libsignal sessions between the simulated devices, set up
// locally during setup (each device's keys live in this process), and a pool of ciphertexts per
// sender/recipient pair encrypted before traffic starts, so the run measures the servers and not
// the load generator's encryption.
import { randomBytes, randomUUID } from "node:crypto";
import {
  CiphertextMessageType,
  groupDecrypt,
  groupEncrypt,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle,
  PreKeySignalMessage,
  PreKeyStore,
  PrivateKey,
  processPreKeyBundle,
  processSenderKeyDistributionMessage,
  ProtocolAddress,
  SenderKeyDistributionMessage,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignalMessage,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from "@signalapp/libsignal-client";
import type { PreKeyRecord, PublicKey } from "@signalapp/libsignal-client";
import type { Registered } from "./setup.js";
import type { Topology } from "./topology.js";

/** A pre-encrypted one-to-one ciphertext. */
export interface PooledCiphertext {
  type: "ciphertext" | "prekey";
  body: Uint8Array;
}

/** What the setup built, for the report. */
export interface SignalSetupStats {
  /** Device pairs with an established (both-way acknowledged) session. */
  sessions: number;
  /** (sender device, group) sender keys. */
  senderKeys: number;
  /** Ciphertexts encrypted into the pools. */
  ciphertexts: number;
  /** Mean size of a pooled one-to-one and group ciphertext, bytes (without the 32-byte header). */
  meanDirectBytes: number;
  meanGroupBytes: number;
  setupSeconds: number;
}

/** Pools of ciphertexts handed out round-robin. */
export interface SignalPools {
  direct(sender: number, recipient: number): PooledCiphertext;
  group(sender: number, group: number): Uint8Array;
  readonly stats: SignalSetupStats;
}

/** Options of {@link createSignalPools}. */
export interface SignalPoolOptions {
  /** Ciphertexts per (sender, recipient device) pair and per (sender, group). */
  poolSize: number;
  /** Plaintext bytes per message. */
  plaintextBytes: number;
  onProgress?: (done: number, total: number) => void;
}

class MemorySessionStore extends SessionStore {
  private readonly m = new Map<string, Uint8Array<ArrayBuffer>>();
  async saveSession(a: ProtocolAddress, r: SessionRecord) {
    this.m.set(`${a.name()}.${a.deviceId()}`, r.serialize());
  }
  async getSession(a: ProtocolAddress) {
    const b = this.m.get(`${a.name()}.${a.deviceId()}`);
    return b ? SessionRecord.deserialize(b) : null;
  }
  async getExistingSessions(as: ProtocolAddress[]) {
    const out: SessionRecord[] = [];
    for (const a of as) {
      const r = await this.getSession(a);
      if (!r) throw new Error(`no session with ${a.name()}.${a.deviceId()}`);
      out.push(r);
    }
    return out;
  }
}

class MemoryIdentityStore extends IdentityKeyStore {
  private readonly known = new Map<string, PublicKey>();
  constructor(
    private readonly pair: IdentityKeyPair,
    private readonly registrationId: number,
  ) {
    super();
  }
  async getIdentityKey() {
    return this.pair.privateKey;
  }
  override async getIdentityKeyPair() {
    return this.pair;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(a: ProtocolAddress, key: PublicKey) {
    const k = `${a.name()}.${a.deviceId()}`;
    const before = this.known.get(k);
    this.known.set(k, key);
    return before && !before.equals(key) ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity() {
    return true;
  }
  async getIdentity(a: ProtocolAddress) {
    return this.known.get(`${a.name()}.${a.deviceId()}`) ?? null;
  }
}

class MemoryPreKeyStore extends PreKeyStore {
  private readonly m = new Map<number, PreKeyRecord>();
  async savePreKey(id: number, r: PreKeyRecord) {
    this.m.set(id, r);
  }
  async getPreKey(id: number) {
    const r = this.m.get(id);
    if (!r) throw new Error(`pre-key ${id} not found`);
    return r;
  }
  async removePreKey(id: number) {
    this.m.delete(id);
  }
}

class MemorySignedPreKeyStore extends SignedPreKeyStore {
  private readonly m = new Map<number, SignedPreKeyRecord>();
  async saveSignedPreKey(id: number, r: SignedPreKeyRecord) {
    this.m.set(id, r);
  }
  async getSignedPreKey(id: number) {
    const r = this.m.get(id);
    if (!r) throw new Error(`signed pre-key ${id} not found`);
    return r;
  }
}

// A last-resort Kyber key: used by every session, so marking it used keeps it.
class MemoryKyberPreKeyStore extends KyberPreKeyStore {
  private readonly m = new Map<number, KyberPreKeyRecord>();
  async saveKyberPreKey(id: number, r: KyberPreKeyRecord) {
    this.m.set(id, r);
  }
  async getKyberPreKey(id: number) {
    const r = this.m.get(id);
    if (!r) throw new Error(`kyber pre-key ${id} not found`);
    return r;
  }
  async markKyberPreKeyUsed() {}
}

class MemorySenderKeyStore extends SenderKeyStore {
  private readonly m = new Map<string, Uint8Array<ArrayBuffer>>();
  async saveSenderKey(a: ProtocolAddress, id: string, r: SenderKeyRecord) {
    this.m.set(`${a.name()}.${a.deviceId()}/${id}`, r.serialize());
  }
  async getSenderKey(a: ProtocolAddress, id: string) {
    const b = this.m.get(`${a.name()}.${a.deviceId()}/${id}`);
    return b ? SenderKeyRecord.deserialize(b) : null;
  }
}

/** One simulated device's libsignal state. */
class SignalDevice {
  readonly sessions = new MemorySessionStore();
  readonly identity: MemoryIdentityStore;
  readonly preKeys = new MemoryPreKeyStore();
  readonly signedPreKeys = new MemorySignedPreKeyStore();
  readonly kyberPreKeys = new MemoryKyberPreKeyStore();
  readonly senderKeys = new MemorySenderKeyStore();
  readonly bundle: PreKeyBundle;

  constructor(
    readonly address: ProtocolAddress,
    readonly registrationId: number,
  ) {
    const pair = IdentityKeyPair.generate();
    this.identity = new MemoryIdentityStore(pair, registrationId);
    const now = Date.now();
    const signedPriv = PrivateKey.generate();
    const signedPub = signedPriv.getPublicKey();
    const signed = SignedPreKeyRecord.new(
      1,
      now,
      signedPub,
      signedPriv,
      pair.privateKey.sign(signedPub.serialize()),
    );
    void this.signedPreKeys.saveSignedPreKey(1, signed);
    const kem = KEMKeyPair.generate();
    const kyber = KyberPreKeyRecord.new(1, now, kem, pair.privateKey.sign(kem.getPublicKey().serialize()));
    void this.kyberPreKeys.saveKyberPreKey(1, kyber);
    this.bundle = PreKeyBundle.new(
      registrationId,
      address.deviceId(),
      null,
      null,
      1,
      signedPub,
      signed.signature(),
      pair.publicKey,
      1,
      kem.getPublicKey(),
      kyber.signature(),
    );
  }

  encrypt(plaintext: Uint8Array<ArrayBuffer>, to: SignalDevice) {
    return signalEncrypt(plaintext, to.address, this.address, this.sessions, this.identity);
  }
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : Math.round(xs.reduce((a, b) => a + b, 0) / xs.length));

/**
 * Sets up libsignal sessions for every one-to-one (sender device, recipient device) pair of the
 * topology — a PQXDH pre-key message answered by the recipient, both decrypted for real, so both
 * directions then use Double Ratchet messages — and a sender key per (member device, group)
 * whose first ciphertext one other member decrypts. Then fills the pools. Receivers never
 * decrypt pooled ciphertexts (pools are reused round-robin, which a ratchet would reject).
 */
export async function createSignalPools(
  topology: Topology,
  registered: Registered,
  opts: SignalPoolOptions,
): Promise<SignalPools> {
  const started = performance.now();
  const devs = topology.devices.map((d) => {
    const ref = registered.devices[d.index];
    if (!ref) throw new Error(`device ${d.index} is not registered`);
    return new SignalDevice(ProtocolAddress.new(ref.accountId, ref.deviceId), ref.registrationId);
  });
  const dev = (i: number) => devs[i] as SignalDevice;
  const plaintext = () => new Uint8Array(randomBytes(Math.max(1, opts.plaintextBytes)));

  const pairs: Array<[number, number]> = [];
  for (const a of topology.accounts) {
    const partner = topology.accounts[a.partner];
    if (!partner) continue;
    for (const s of a.devices) for (const r of partner.devices) pairs.push([s, r]);
  }
  const groupSenders = topology.groups.reduce((n, g) => n + g.devices.length, 0);
  const total = pairs.length + groupSenders;
  let done = 0;

  const established = new Set<string>();
  for (const [s, r] of pairs) {
    if (!established.has(`${s}>${r}`)) {
      const a = dev(s);
      const b = dev(r);
      await processPreKeyBundle(b.bundle, b.address, a.address, a.sessions, a.identity);
      const hello = await a.encrypt(plaintext(), b);
      if (hello.type() !== (CiphertextMessageType.PreKey as number))
        throw new Error("expected a pre-key message");
      await signalDecryptPreKey(
        PreKeySignalMessage.deserialize(hello.serialize()),
        a.address,
        b.address,
        b.sessions,
        b.identity,
        b.preKeys,
        b.signedPreKeys,
        b.kyberPreKeys,
      );
      const reply = await b.encrypt(plaintext(), a);
      await signalDecrypt(
        SignalMessage.deserialize(reply.serialize()),
        b.address,
        a.address,
        a.sessions,
        a.identity,
      );
      established.add(`${s}>${r}`).add(`${r}>${s}`);
    }
    opts.onProgress?.(++done, total);
  }

  const directPools = new Map<string, { items: PooledCiphertext[]; next: number }>();
  const directSizes: number[] = [];
  for (const [s, r] of pairs) {
    const items: PooledCiphertext[] = [];
    for (let k = 0; k < opts.poolSize; k++) {
      const c = await dev(s).encrypt(plaintext(), dev(r));
      const body = c.serialize();
      items.push({
        type: c.type() === (CiphertextMessageType.PreKey as number) ? "prekey" : "ciphertext",
        body,
      });
      directSizes.push(body.byteLength);
    }
    directPools.set(`${s}>${r}`, { items, next: 0 });
  }

  const groupPools = new Map<string, { items: Uint8Array[]; next: number }>();
  const groupSizes: number[] = [];
  for (const g of topology.groups) {
    const distributionId = randomUUID();
    for (const s of g.devices) {
      const sender = dev(s);
      const skdm = await SenderKeyDistributionMessage.create(
        sender.address,
        distributionId,
        sender.senderKeys,
      );
      const items: Uint8Array[] = [];
      for (let k = 0; k < opts.poolSize; k++) {
        const c = await groupEncrypt(sender.address, distributionId, sender.senderKeys, plaintext());
        items.push(c.serialize());
        groupSizes.push(c.serialize().byteLength);
      }
      // Distribution to every member is what clients do; one member decrypting proves the key.
      const verifier = g.devices.find((d) => d !== s);
      if (verifier !== undefined && items[0]) {
        const v = dev(verifier);
        await processSenderKeyDistributionMessage(
          sender.address,
          SenderKeyDistributionMessage.deserialize(skdm.serialize()),
          v.senderKeys,
        );
        await groupDecrypt(sender.address, v.senderKeys, new Uint8Array(items[0]));
      }
      groupPools.set(`${s}@${g.index}`, { items, next: 0 });
      opts.onProgress?.(++done, total);
    }
  }

  const stats: SignalSetupStats = {
    sessions: established.size / 2,
    senderKeys: groupPools.size,
    ciphertexts: directSizes.length + groupSizes.length,
    meanDirectBytes: mean(directSizes),
    meanGroupBytes: mean(groupSizes),
    setupSeconds: Math.round((performance.now() - started) / 100) / 10,
  };
  return {
    stats,
    direct(sender, recipient) {
      const pool = directPools.get(`${sender}>${recipient}`);
      if (!pool) throw new Error(`no session from device ${sender} to ${recipient}`);
      const item = pool.items[pool.next] as PooledCiphertext;
      pool.next = (pool.next + 1) % pool.items.length;
      return item;
    },
    group(sender, group) {
      const pool = groupPools.get(`${sender}@${group}`);
      if (!pool) throw new Error(`no sender key of device ${sender} in group ${group}`);
      const item = pool.items[pool.next] as Uint8Array;
      pool.next = (pool.next + 1) % pool.items.length;
      return item;
    },
  };
}
