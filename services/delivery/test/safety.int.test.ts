// Message franking and sealed sender through the delivery API (docs/safety.md cites these tests).
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import {
  ContentHint,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  PreKeyBundle,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  SessionStore,
  UnidentifiedSenderMessageContent,
  processPreKeyBundle,
  sealedSenderMultiRecipientEncrypt,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import type { SessionRecord } from "@signalapp/libsignal-client";
import { Code, isAppError } from "@switchboard/errors";
import { createClient } from "@switchboard/grpc";
import { createRedisFanout } from "@switchboard/fanout";
import {
  EnvelopeType,
  MessageService,
  ReportService,
  SealedSenderService,
  type Envelope,
} from "@switchboard/proto";
import { listReportsAgainst } from "@switchboard/storage";
import { redisUrl } from "@switchboard/testkit";
import { sql } from "kysely";
import pino from "pino";
import { describe, expect, onTestFinished, test } from "vitest";
import { buildApp } from "../src/app.js";
import {
  clientsFor,
  connectDevice,
  createBackend,
  linkDevice,
  startInstance,
  registerAccount,
  testConfig,
  type TestDevice,
} from "./harness.js";

const hmac = (key: Uint8Array, data: Uint8Array) =>
  new Uint8Array(createHmac("sha256", key).update(data).digest());

function reports(target: string, auth: string) {
  const c = createClient(ReportService, target, { metadata: () => ({ authorization: auth }) });
  onTestFinished(() => c.close());
  return c;
}

function sealedService(target: string, auth: string) {
  const c = createClient(SealedSenderService, target, { metadata: () => ({ authorization: auth }) });
  onTestFinished(() => c.close());
  return c;
}

/** A MessageService client that carries only an unidentified access key: no credentials at all. */
function anonymous(target: string, accessKey: Uint8Array) {
  const c = createClient(MessageService, target, {
    metadata: () => ({ "unidentified-access-key": Buffer.from(accessKey).toString("base64") }),
  });
  onTestFinished(() => c.close());
  return c;
}

async function expectRejected(p: Promise<unknown>, code: Code, reason: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isAppError(err), `expected ${reason}, got ${String(err)}`).toBe(true);
  if (isAppError(err)) {
    expect(err.reason).toBe(reason);
    expect(err.code).toBe(code);
  }
}

async function uploadIdentity(target: string, d: TestDevice) {
  const identity = PrivateKey.generate().getPublicKey().serialize();
  const ec = () => PrivateKey.generate().getPublicKey().serialize();
  await clientsFor(target, d.auth).keys.uploadKeys({
    identityKey: identity,
    signedPreKey: { keyId: 1, publicKey: ec(), signature: randomBytes(64) },
    lastResortKyberPreKey: { keyId: 999, publicKey: randomBytes(1569), signature: randomBytes(64) },
  });
  return identity;
}

/** Sends `plaintext` franked: commitment in report_tag, franking key returned for the report. */
async function sendFranked(target: string, from: TestDevice, to: TestDevice, plaintext: Uint8Array) {
  const frankingKey = randomBytes(32);
  const commitment = hmac(frankingKey, plaintext);
  const r = await clientsFor(target, from.auth).messages.sendMessage({
    destinationAccountId: to.accountId,
    messages: [
      {
        deviceId: to.deviceId,
        registrationId: to.registrationId,
        type: EnvelopeType.CIPHERTEXT,
        content: randomBytes(48),
      },
    ],
    clientMessageId: randomUUID(),
    clientTimestampMs: BigInt(Date.now()),
    reportTag: commitment,
  });
  expect(r.result.case).toBe("sent");
  return { frankingKey, commitment };
}

async function receiveOne(target: string, d: TestDevice): Promise<Envelope> {
  const c = connectDevice(target, d);
  await c.until(() => c.received.length >= 1);
  return c.received[0] as Envelope;
}

const reportOf = (env: Envelope, plaintext: Uint8Array, frankingKey: Uint8Array) => ({
  messageId: env.id,
  sender: env.source,
  serverTimestampMs: env.serverTimestampMs,
  plaintext,
  frankingKey,
  reportTag: env.reportTag,
  serverFrankingTag: env.serverFrankingTag,
  reason: "spam",
});

describe("message franking", () => {
  test("a genuine report verifies and is recorded against the sender; forged ones are rejected", async () => {
    const backend = await createBackend();
    // Two instances: the tag made by the one that committed verifies on the other (shared secret).
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const alice = await registerAccount(a.target);
    const bob = await registerAccount(a.target);
    const mallory = await registerAccount(a.target);
    const plaintext = Buffer.from("buy my crypto, send 1 BTC to ...");
    const { frankingKey } = await sendFranked(a.target, alice, bob, plaintext);
    const env = await receiveOne(b.target, bob);
    expect(env.serverFrankingTag.byteLength).toBe(32);
    const genuine = reportOf(env, plaintext, frankingKey);
    const bobReports = reports(b.target, bob.auth);

    await expectRejected(
      bobReports.reportMessage({ ...genuine, plaintext: Buffer.from("buy my crypto, send 9 BTC to ...") }),
      Code.InvalidArgument,
      "COMMITMENT_MISMATCH",
    );
    await expectRejected(
      bobReports.reportMessage({ ...genuine, frankingKey: randomBytes(32) }),
      Code.InvalidArgument,
      "COMMITMENT_MISMATCH",
    );
    await expectRejected(
      bobReports.reportMessage({ ...genuine, sender: { accountId: mallory.accountId, deviceId: 1 } }),
      Code.InvalidArgument,
      "FRANKING_TAG_MISMATCH",
    );
    await expectRejected(
      bobReports.reportMessage({ ...genuine, serverTimestampMs: env.serverTimestampMs - 1000n }),
      Code.InvalidArgument,
      "FRANKING_TAG_MISMATCH",
    );
    await expectRejected(
      bobReports.reportMessage({ ...genuine, serverFrankingTag: randomBytes(32) }),
      Code.InvalidArgument,
      "FRANKING_TAG_MISMATCH",
    );
    await expectRejected(
      bobReports.reportMessage({ ...genuine, messageId: randomUUID() }),
      Code.InvalidArgument,
      "FRANKING_TAG_MISMATCH",
    );
    // A forged plaintext with a matching fresh commitment: the server tag binds the original one.
    const otherKey = randomBytes(32);
    const forgedText = Buffer.from("something alice never said");
    await expectRejected(
      bobReports.reportMessage({
        ...genuine,
        plaintext: forgedText,
        frankingKey: otherKey,
        reportTag: hmac(otherKey, forgedText),
      }),
      Code.InvalidArgument,
      "FRANKING_TAG_MISMATCH",
    );
    // Someone else (not the recipient) cannot report bob's message with bob's proof.
    await expectRejected(
      reports(b.target, mallory.auth).reportMessage(genuine),
      Code.InvalidArgument,
      "FRANKING_TAG_MISMATCH",
    );
    expect(await listReportsAgainst(backend.db, alice.accountId)).toHaveLength(0);
    expect(await listReportsAgainst(backend.db, mallory.accountId)).toHaveLength(0);

    const ok = await bobReports.reportMessage(genuine);
    expect(ok.sender).toMatchObject({ accountId: alice.accountId, deviceId: 1 });
    const stored = await listReportsAgainst(backend.db, alice.accountId);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      id: ok.reportId,
      reporter_account_id: bob.accountId,
      message_id: env.id,
      sealed_sender: false,
      reason: "spam",
    });
    expect(Buffer.from(stored[0]?.plaintext ?? []).toString()).toBe(plaintext.toString());
    await expectRejected(bobReports.reportMessage(genuine), Code.AlreadyExists, "ALREADY_REPORTED");
  });

  test("a message sent without a commitment carries no server tag", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    await clientsFor(inst.target, alice.auth).messages.sendMessage({
      destinationAccountId: bob.accountId,
      messages: [
        {
          deviceId: 1,
          registrationId: bob.registrationId,
          type: EnvelopeType.CIPHERTEXT,
          content: randomBytes(8),
        },
      ],
      clientMessageId: randomUUID(),
    });
    const env = await receiveOne(inst.target, bob);
    expect(env.reportTag.byteLength).toBe(0);
    expect(env.serverFrankingTag.byteLength).toBe(0);
  });

  test("server keys are generated once and shared; an environment override replaces them", async () => {
    const backend = await createBackend();
    await startInstance(backend);
    await startInstance(backend);
    const rows = await backend.db.selectFrom("server_keys").select(["name"]).orderBy("name").execute();
    expect(rows.map((r) => r.name)).toEqual([
      "franking-secret",
      "sealed-sender-server",
      "sealed-sender-trust-root",
    ]);
    const alice = await registerAccount((await startInstance(backend)).target);
    const root = PrivateKey.generate();
    const over = await startInstance(backend, {
      config: {
        FRANKING_SECRET: randomBytes(32).toString("base64"),
        SEALED_SENDER_TRUST_ROOT_KEY: Buffer.from(root.serialize()).toString("base64"),
        SEALED_SENDER_SERVER_KEY: Buffer.from(PrivateKey.generate().serialize()).toString("base64"),
      },
    });
    const trust = await sealedService(over.target, alice.auth).getTrustRoot({});
    expect(Buffer.from(trust.publicKey).equals(Buffer.from(root.getPublicKey().serialize()))).toBe(true);
  });
});

describe("sealed sender", () => {
  async function setup(config: Parameters<typeof startInstance>[1] = {}) {
    const backend = await createBackend();
    const inst = await startInstance(backend, config);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target, "messenger");
    await uploadIdentity(inst.target, alice);
    const accessKey = randomBytes(16);
    await sealedService(inst.target, bob.auth).setUnidentifiedAccess({ accessKey });
    const cert = await sealedService(inst.target, alice.auth).getSenderCertificate({});
    return { backend, inst, alice, bob, accessKey, cert };
  }

  const sealedSend = (target: string, key: Uint8Array, to: TestDevice, over: Record<string, unknown> = {}) =>
    anonymous(target, key).sendMessage({
      destinationAccountId: to.accountId,
      messages: [
        {
          deviceId: to.deviceId,
          registrationId: to.registrationId,
          type: EnvelopeType.SEALED_SENDER,
          content: randomBytes(64),
        },
      ],
      clientMessageId: randomUUID(),
      clientTimestampMs: BigInt(Date.now()),
      ...over,
    });

  test("issues sender certificates that validate against the published trust root", async () => {
    const { inst, alice, cert } = await setup();
    const trust = await sealedService(inst.target, alice.auth).getTrustRoot({});
    const parsed = SenderCertificate.deserialize(new Uint8Array(cert.certificate));
    expect(parsed.senderUuid()).toBe(alice.accountId);
    expect(parsed.senderDeviceId()).toBe(1);
    expect(parsed.validate(PublicKey.deserialize(new Uint8Array(trust.publicKey)), Date.now())).toBe(true);
    expect(parsed.validate(PrivateKey.generate().getPublicKey(), Date.now())).toBe(false);
    expect(Number(cert.expiresAtMs)).toBeGreaterThan(Date.now());
  });

  test("refuses a certificate for a device without an identity key", async () => {
    const { inst, bob } = await setup();
    await expectRejected(
      sealedService(inst.target, bob.auth).getSenderCertificate({}),
      Code.FailedPrecondition,
      "NO_IDENTITY_KEY",
    );
  });

  test("delivers with no sender, and stores and logs nothing that identifies the sender", async () => {
    const backend = await createBackend();
    const lines: string[] = [];
    const log = pino(
      { level: "debug" },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    );
    const fanout = await createRedisFanout({ url: redisUrl(), keyPrefix: backend.prefix });
    const app = buildApp({ config: testConfig(), db: backend.db, fanout, log, collectDefaultMetrics: false });
    const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
    onTestFinished(async () => {
      await app.close(1000);
      await fanout.close();
    });
    const target = `127.0.0.1:${port}`;
    const alice = await registerAccount(target);
    const bob = await registerAccount(target, "instagram");
    await uploadIdentity(target, alice);
    const accessKey = randomBytes(16);
    await sealedService(target, bob.auth).setUnidentifiedAccess({ accessKey });
    await sealedService(target, alice.auth).getSenderCertificate({});

    const before = lines.length;
    const r = await sealedSend(target, accessKey, bob, { reportTag: randomBytes(32) });
    expect(r.result.case).toBe("sent");
    const sealedLines = lines.slice(before).join("\n");

    const env = await receiveOne(target, bob);
    expect(env.type).toBe(EnvelopeType.SEALED_SENDER);
    expect(env.source).toBeUndefined();
    expect(env.sourceApp).toBe(0);
    expect(env.sourceRegistrationId).toBe(0);
    expect(env.serverFrankingTag.byteLength).toBe(32);

    // Every row of every table written by the send: no trace of alice beyond her own account rows.
    const queued = await sql<Record<string, unknown>>`SELECT * FROM queued_messages`.execute(backend.db);
    const log2 = await sql<Record<string, unknown>>`SELECT * FROM send_log`.execute(backend.db);
    const dump = JSON.stringify([...queued.rows, ...log2.rows]);
    expect(dump).not.toContain(alice.accountId);
    for (const row of queued.rows) {
      expect(row.source_account_id).toBeNull();
      expect(row.source_device_id).toBeNull();
      expect(Number(row.source_app)).toBe(0);
      expect(Number(row.source_registration_id)).toBe(0);
    }
    // The logs of the sealed send name neither alice's account nor her credentials.
    expect(sealedLines.length).toBeGreaterThan(0);
    expect(sealedLines).not.toContain(alice.accountId);
    expect(sealedLines).not.toContain(alice.password);
    expect(sealedLines).not.toContain(Buffer.from(accessKey).toString("base64"));
  });

  test("a wrong, missing or revoked access key is refused and stores nothing", async () => {
    const { backend, inst, bob, accessKey } = await setup();
    await expectRejected(
      sealedSend(inst.target, randomBytes(16), bob),
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    );
    await expectRejected(
      sealedSend(inst.target, randomBytes(5), bob),
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    );
    // An unknown account answers the same: sealed sends do not reveal which accounts exist.
    await expectRejected(
      sealedSend(inst.target, accessKey, { ...bob, accountId: randomUUID() }),
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    );
    // Blocking: bob rotates his key (and shares the new one only with contacts he accepts).
    expect((await sealedSend(inst.target, accessKey, bob)).result.case).toBe("sent");
    const rotated = randomBytes(16);
    await sealedService(inst.target, bob.auth).setUnidentifiedAccess({ accessKey: rotated });
    await expectRejected(sealedSend(inst.target, accessKey, bob), Code.Unauthenticated, "INVALID_ACCESS_KEY");
    expect((await sealedSend(inst.target, rotated, bob)).result.case).toBe("sent");
    await sealedService(inst.target, bob.auth).disableUnidentifiedAccess({});
    await expectRejected(sealedSend(inst.target, rotated, bob), Code.Unauthenticated, "INVALID_ACCESS_KEY");
    const n = await backend.db
      .selectFrom("queued_messages")
      .select((eb) => eb.fn.countAll().as("n"))
      .executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(2);
  });

  test("unrestricted access admits any key; bad requests get a reason", async () => {
    const { inst, bob, alice } = await setup();
    await sealedService(inst.target, bob.auth).setUnidentifiedAccess({ unrestricted: true });
    expect((await sealedSend(inst.target, randomBytes(16), bob)).result.case).toBe("sent");
    await expectRejected(
      sealedSend(inst.target, randomBytes(16), bob, { sender: { accountId: alice.accountId, deviceId: 1 } }),
      Code.InvalidArgument,
      "SENDER_NOT_ALLOWED",
    );
    await expectRejected(
      anonymous(inst.target, randomBytes(16)).sendMessage({
        destinationAccountId: bob.accountId,
        messages: [
          {
            deviceId: 1,
            registrationId: bob.registrationId,
            type: EnvelopeType.CIPHERTEXT,
            content: randomBytes(8),
          },
        ],
        clientMessageId: randomUUID(),
      }),
      Code.InvalidArgument,
      "INVALID_ENVELOPE_TYPE",
    );
    const mismatch = await sealedSend(inst.target, randomBytes(16), { ...bob, deviceId: 2 });
    expect(mismatch.result.case).toBe("mismatchedDevices");
  });

  test("a retry with the same client_message_id is answered from the first send", async () => {
    const { backend, inst, bob, accessKey } = await setup();
    const id = randomUUID();
    const first = await sealedSend(inst.target, accessKey, bob, { clientMessageId: id });
    const again = await sealedSend(inst.target, accessKey, bob, { clientMessageId: id });
    expect(first.result.case === "sent" && again.result.case === "sent").toBe(true);
    if (first.result.case === "sent" && again.result.case === "sent") {
      expect(again.result.value.messageId).toBe(first.result.value.messageId);
      expect(again.result.value.duplicate).toBe(true);
    }
    const n = await backend.db
      .selectFrom("queued_messages")
      .select((eb) => eb.fn.countAll().as("n"))
      .executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(1);
  });

  test("sealed sends are rate limited per recipient and access key", async () => {
    const { inst, bob, accessKey } = await setup({ config: { RATE_PAIR_PER_SECOND: 1 } });
    let limited: unknown;
    for (let i = 0; i < 20 && !limited; i++) {
      limited = await sealedSend(inst.target, accessKey, bob).then(
        () => undefined,
        (e: unknown) => e,
      );
    }
    expect(isAppError(limited) && limited.reason).toBe("RATE_LIMITED");
    expect(isAppError(limited) && limited.code).toBe(Code.ResourceExhausted);
  });

  test("a sealed message's report names the sender from its certificate; a forged certificate is rejected", async () => {
    const { backend, inst, alice, bob, accessKey, cert } = await setup();
    const plaintext = Buffer.from("sealed abuse");
    const frankingKey = randomBytes(32);
    await sealedSend(inst.target, accessKey, bob, { reportTag: hmac(frankingKey, plaintext) });
    const env = await receiveOne(inst.target, bob);
    const genuine = { ...reportOf(env, plaintext, frankingKey), senderCertificate: cert.certificate };
    const bobReports = reports(inst.target, bob.auth);
    await expectRejected(
      bobReports.reportMessage({ ...genuine, senderCertificate: randomBytes(100) }),
      Code.InvalidArgument,
      "INVALID_SENDER_CERTIFICATE",
    );
    await expectRejected(
      bobReports.reportMessage({ ...genuine, senderCertificate: new Uint8Array() }),
      Code.InvalidArgument,
      "MISSING_FIELD",
    );
    const ok = await bobReports.reportMessage(genuine);
    expect(ok.sender).toMatchObject({ accountId: alice.accountId, deviceId: 1 });
    const stored = await listReportsAgainst(backend.db, alice.accountId);
    expect(stored[0]?.sealed_sender).toBe(true);
  });
});

/** A sender's libsignal state, in memory: sessions with made-up recipient devices. */
class MemorySessions extends SessionStore {
  readonly sessions = new Map<string, SessionRecord>();
  async saveSession(name: ProtocolAddress, record: SessionRecord) {
    this.sessions.set(name.toString(), record);
  }
  async getSession(name: ProtocolAddress) {
    return this.sessions.get(name.toString()) ?? null;
  }
  async getExistingSessions(addresses: ProtocolAddress[]) {
    return addresses.map((a) => {
      const s = this.sessions.get(a.toString());
      if (!s) throw new Error(`no session with ${a.toString()}`);
      return s;
    });
  }
}

class MemoryIdentities extends IdentityKeyStore {
  readonly own = IdentityKeyPair.generate();
  readonly known = new Map<string, PublicKey>();
  async getIdentityKey() {
    return this.own.privateKey;
  }
  async getLocalRegistrationId() {
    return 1;
  }
  async saveIdentity(name: ProtocolAddress, key: PublicKey) {
    this.known.set(name.toString(), key);
    return IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity() {
    return true;
  }
  async getIdentity(name: ProtocolAddress) {
    return this.known.get(name.toString()) ?? null;
  }
}

/**
 * Builds what an SDK sends for a sealed group message: libsignal multi-recipient sealed-sender
 * messages, the k-th device of every account in the k-th one (each device has its own identity).
 * Sessions are started from made-up bundles carrying the devices' real registration ids.
 */
async function multiRecipientMessages(sender: TestDevice, certificate: Uint8Array, devices: TestDevice[]) {
  const sessions = new MemorySessions();
  const identities = new MemoryIdentities();
  const local = ProtocolAddress.new(sender.accountId, sender.deviceId);
  const ranks: ProtocolAddress[][] = [];
  const seen = new Map<string, number>();
  for (const d of devices) {
    const identity = IdentityKeyPair.generate();
    const signed = PrivateKey.generate().getPublicKey();
    const kyber = KEMKeyPair.generate().getPublicKey();
    const address = ProtocolAddress.new(d.accountId, d.deviceId);
    await processPreKeyBundle(
      PreKeyBundle.new(
        d.registrationId,
        d.deviceId,
        null,
        null,
        1,
        signed,
        identity.privateKey.sign(signed.serialize()),
        identity.publicKey,
        1,
        kyber,
        identity.privateKey.sign(kyber.serialize()),
      ),
      address,
      local,
      sessions,
      identities,
    );
    const rank = seen.get(d.accountId) ?? 0;
    seen.set(d.accountId, rank + 1);
    (ranks[rank] ??= []).push(address);
  }
  const first = ranks[0]?.[0];
  if (!first) throw new Error("no recipients");
  const inner = await signalEncrypt(new Uint8Array(randomBytes(32)), first, local, sessions, identities);
  const content = UnidentifiedSenderMessageContent.new(
    inner,
    SenderCertificate.deserialize(new Uint8Array(certificate)),
    ContentHint.Default,
    new Uint8Array(Buffer.from(randomUUID())),
  );
  const out: Uint8Array[] = [];
  for (const recipients of ranks)
    out.push(
      await sealedSenderMultiRecipientEncrypt({
        content,
        recipients,
        identityStore: identities,
        sessionStore: sessions,
      }),
    );
  return out;
}

const xor = (...keys: Uint8Array[]) => {
  const out = new Uint8Array(16);
  for (const k of keys) for (let i = 0; i < 16; i++) out[i] = (out[i] ?? 0) ^ (k[i] ?? 0);
  return out;
};

describe("sealed sender to several recipients (sealed group messages)", () => {
  async function setup(config: Parameters<typeof startInstance>[1] = {}) {
    const backend = await createBackend();
    const inst = await startInstance(backend, config);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target, "messenger");
    const bobLaptop = await linkDevice(inst.target, bob, "messenger");
    const carol = await registerAccount(inst.target, "instagram");
    const dave = await registerAccount(inst.target);
    await uploadIdentity(inst.target, alice);
    const keys = { bob: randomBytes(16), carol: randomBytes(16) };
    await sealedService(inst.target, bob.auth).setUnidentifiedAccess({ accessKey: keys.bob });
    await sealedService(inst.target, carol.auth).setUnidentifiedAccess({ accessKey: keys.carol });
    // Dave takes sealed messages from anyone: his key does not count in the combined key.
    await sealedService(inst.target, dave.auth).setUnidentifiedAccess({ unrestricted: true });
    const cert = await sealedService(inst.target, alice.auth).getSenderCertificate({});
    const combined = xor(keys.bob, keys.carol);
    const messages = await multiRecipientMessages(alice, cert.certificate, [bob, bobLaptop, carol, dave]);
    const send = (key: Uint8Array, over: Record<string, unknown> = {}) =>
      anonymous(inst.target, key).sendMultiRecipientMessage({
        messages,
        clientMessageId: randomUUID(),
        clientTimestampMs: BigInt(Date.now()),
        urgent: true,
        ...over,
      });
    const count = async (table: "queued_messages" | "send_log") =>
      Number(
        (
          await backend.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as("n"))
            .executeTakeFirstOrThrow()
        ).n,
      );
    return { backend, inst, alice, bob, bobLaptop, carol, dave, keys, combined, messages, send, count };
  }

  test("queues one sealed row per member device naming no sender; a retry is answered from the first send", async () => {
    const { backend, inst, alice, bob, bobLaptop, carol, dave, combined, messages, send, count } =
      await setup();
    expect(messages.length).toBe(2);
    const id = randomUUID();
    const first = await send(combined, { clientMessageId: id });
    expect(first.result.case).toBe("sent");
    const again = await send(combined, { clientMessageId: id });
    expect(again.result.case === "sent" && first.result.case === "sent").toBe(true);
    if (again.result.case === "sent" && first.result.case === "sent") {
      expect(again.result.value.duplicate).toBe(true);
      expect(again.result.value.messageId).toBe(first.result.value.messageId);
    }
    // Still the first send's answer after dave added a device (the device lists are not rechecked).
    await linkDevice(inst.target, dave);
    const late = await send(combined, { clientMessageId: id });
    expect(late.result.case === "sent" && late.result.value.duplicate).toBe(true);
    const rows = await backend.db.selectFrom("queued_messages").selectAll().execute();
    expect(rows.map((r) => `${r.account_id}.${r.device_id}`).sort()).toEqual(
      [bob, bobLaptop, carol, dave].map((d) => `${d.accountId}.${d.deviceId}`).sort(),
    );
    const log = await sql<Record<string, unknown>>`SELECT * FROM send_log`.execute(backend.db);
    expect(JSON.stringify([...rows, ...log.rows])).not.toContain(alice.accountId);
    for (const row of rows) {
      expect(row.type).toBe(EnvelopeType.SEALED_SENDER);
      expect(row.source_account_id).toBeNull();
      expect(row.source_device_id).toBeNull();
      expect(row.group_id).toBeNull();
    }
    // Bob's two devices got different payloads (each sealed to its own identity key).
    const bobRows = rows.filter((r) => r.account_id === bob.accountId);
    expect(Buffer.from(bobRows[0]?.content ?? []).equals(Buffer.from(bobRows[1]?.content ?? []))).toBe(false);
    expect(await count("send_log")).toBe(3);

    const env = await receiveOne(inst.target, carol);
    expect(env.type).toBe(EnvelopeType.SEALED_SENDER);
    expect(env.source).toBeUndefined();
    expect(env.urgent).toBe(true);
  });

  test("a wrong combined key, or a member without sealed sender, is refused without naming anyone and stores nothing", async () => {
    const { inst, bob, keys, combined, send, count } = await setup();
    // Every single key but the combined one is wrong, and so is a combination missing one member.
    for (const key of [keys.bob, keys.carol, randomBytes(16), new Uint8Array(16), randomBytes(5)]) {
      const err = await send(key).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isAppError(err) && [err.code, err.reason, err.message.includes(bob.accountId)]).toEqual([
        Code.Unauthenticated,
        "INVALID_ACCESS_KEY",
        false,
      ]);
    }
    // Bob turns sealed sender off: the combined key no longer authorises the send.
    await sealedService(inst.target, bob.auth).disableUnidentifiedAccess({});
    await expectRejected(send(combined), Code.Unauthenticated, "INVALID_ACCESS_KEY");
    expect(await count("queued_messages")).toBe(0);
    expect(await count("send_log")).toBe(0);
    await expectRejected(
      send(combined, { messages: [randomBytes(80)] }),
      Code.InvalidArgument,
      "INVALID_MULTI_RECIPIENT_MESSAGE",
    );
  });

  test("device-list differences are answered per account, as for group sends", async () => {
    const { inst, bob, carol, dave, alice, combined, count, messages } = await setup();
    const carolTablet = await linkDevice(inst.target, carol, "instagram");
    const r = await anonymous(inst.target, combined).sendMultiRecipientMessage({
      messages,
      clientMessageId: randomUUID(),
    });
    expect(r.result.case).toBe("mismatchedDevices");
    if (r.result.case === "mismatchedDevices")
      expect(r.result.value.mismatched).toMatchObject([
        { accountId: carol.accountId, missingDevices: [carolTablet.deviceId], extraDevices: [] },
      ]);
    // Only the first device of each account: bob's laptop is missing too.
    const cert = await sealedService(inst.target, alice.auth).getSenderCertificate({});
    const partial = await multiRecipientMessages(alice, cert.certificate, [
      bob,
      { ...carol, registrationId: carol.registrationId + 1 },
      carolTablet,
      dave,
    ]);
    const r2 = await anonymous(inst.target, combined).sendMultiRecipientMessage({
      messages: partial,
      clientMessageId: randomUUID(),
    });
    expect(r2.result.case).toBe("mismatchedDevices");
    if (r2.result.case === "mismatchedDevices") {
      expect(r2.result.value.mismatched.map((m) => [m.accountId, m.missingDevices])).toEqual([
        [bob.accountId, [2]],
      ]);
      expect(r2.result.value.stale.map((s) => [s.accountId, s.staleDevices])).toEqual([
        [carol.accountId, [1]],
      ]);
    }
    expect(await count("queued_messages")).toBe(0);
  });

  test("takes a token from every member's sealed-sender bucket", async () => {
    const { combined, send } = await setup({ config: { RATE_PAIR_PER_SECOND: 1 } });
    let limited: unknown;
    for (let i = 0; i < 20 && !limited; i++)
      limited = await send(combined).then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isAppError(limited) && [limited.code, limited.reason]).toEqual([
      Code.ResourceExhausted,
      "RATE_LIMITED",
    ]);
  });

  test("ephemeral (typing): reaches a connected device, never stored, same key check", async () => {
    const { inst, carol, keys, combined, send, count } = await setup();
    const online = connectDevice(inst.target, carol);
    await online.until(() => online.queueEmpty);
    await expectRejected(
      send(randomBytes(16), { ephemeral: true }),
      Code.Unauthenticated,
      "INVALID_ACCESS_KEY",
    );
    expect((await send(combined, { ephemeral: true })).result.case).toBe("sent");
    // And one-to-one sealed typing.
    const one = await sealedSend1(inst.target, keys.carol, carol, { ephemeral: true });
    expect(one.result.case).toBe("sent");
    await online.until(() => online.received.length >= 2);
    for (const env of online.received) {
      expect(env.type).toBe(EnvelopeType.SEALED_SENDER);
      expect(env.ephemeral).toBe(true);
      expect(env.source).toBeUndefined();
    }
    expect(await count("queued_messages")).toBe(0);
    expect(await count("send_log")).toBe(0);
  });
});

const sealedSend1 = (target: string, key: Uint8Array, to: TestDevice, over: Record<string, unknown> = {}) =>
  anonymous(target, key).sendMessage({
    destinationAccountId: to.accountId,
    messages: [
      {
        deviceId: to.deviceId,
        registrationId: to.registrationId,
        type: EnvelopeType.SEALED_SENDER,
        content: randomBytes(64),
      },
    ],
    clientMessageId: randomUUID(),
    clientTimestampMs: BigInt(Date.now()),
    ...over,
  });
