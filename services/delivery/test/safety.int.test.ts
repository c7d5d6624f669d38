// Message franking and sealed sender through the delivery API (docs/safety.md cites these tests).
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { PrivateKey, PublicKey, SenderCertificate } from "@signalapp/libsignal-client";
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
