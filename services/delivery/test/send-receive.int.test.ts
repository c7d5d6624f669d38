import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import { EnvelopeType } from "@switchboard/proto";
import { sql } from "kysely";
import { describe, expect, test } from "vitest";
import {
  clientsFor,
  connectDevice,
  createBackend,
  linkDevice,
  registerAccount,
  sendTo,
  sleep,
  startInstance,
  text,
} from "./harness.js";

describe("MessageService", () => {
  test("delivers a message durably stored before the sender hears success", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const r = await sendTo(clientsFor(inst.target, alice.auth), [bob], "hello bob");
    expect(r.result.case).toBe("sent");
    const rows = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${bob.accountId}`.execute(
      backend.db,
    );
    expect(rows.rows[0]?.n).toBe(1);
    const reader = connectDevice(inst.target, bob);
    await reader.until(() => reader.received.length === 1 && reader.queueEmpty);
    const env = reader.received[0];
    expect(env && text(env)).toBe("hello bob");
    expect(env?.source?.accountId).toBe(alice.accountId);
    expect(env?.type).toBe(EnvelopeType.CIPHERTEXT);
  });

  test("rejects a device-list mismatch and a stale registration id, storing nothing", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const bob2 = await linkDevice(inst.target, bob);
    const c = clientsFor(inst.target, alice.auth);

    const missing = await sendTo(c, [bob], "x");
    expect(missing.result).toMatchObject({
      case: "mismatchedDevices",
      value: { missingDevices: [bob2.deviceId], extraDevices: [] },
    });

    const extra = await sendTo(c, [bob, bob2, { ...bob2, deviceId: 9 }], "x");
    expect(extra.result).toMatchObject({
      case: "mismatchedDevices",
      value: { missingDevices: [], extraDevices: [9] },
    });

    const stale = await sendTo(c, [bob, { ...bob2, registrationId: bob2.registrationId === 1 ? 2 : 1 }], "x");
    expect(stale.result).toMatchObject({ case: "staleDevices", value: { staleDevices: [bob2.deviceId] } });

    const unknown = await sendTo(c, [{ ...bob, accountId: randomUUID() }], "x");
    expect(unknown.result.case).toBe("recipientNotFound");

    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM queued_messages`.execute(backend.db);
    expect(rows.rows[0]?.n).toBe(0);
    const log = await sql<{ n: number }>`SELECT count(*)::int AS n FROM send_log`.execute(backend.db);
    expect(log.rows[0]?.n).toBe(0);
  });

  test("answers a retry racing the original with the original result and stores one message", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const alice = await registerAccount(a.target);
    const bob = await registerAccount(a.target);
    const id = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        sendTo(clientsFor(i % 2 === 0 ? a.target : b.target, alice.auth), [bob], "once", id),
      ),
    );
    const sent = results.map((r) => (r.result.case === "sent" ? r.result.value : undefined));
    expect(sent.every((s) => s !== undefined)).toBe(true);
    expect(new Set(sent.map((s) => s?.messageId)).size).toBe(1);
    expect(sent.filter((s) => s?.duplicate === false)).toHaveLength(1);
    const rows = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${bob.accountId}`.execute(
      backend.db,
    );
    expect(rows.rows[0]?.n).toBe(1);
  });

  test("delivers across instances: sent through A, streamed from B", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const alice = await registerAccount(a.target);
    const bob = await registerAccount(a.target);
    const reader = connectDevice(b.target, bob);
    await reader.until(() => reader.queueEmpty);
    const started = Date.now();
    await sendTo(clientsFor(a.target, alice.auth), [bob], "via A");
    await reader.until(() => reader.received.length === 1);
    expect(text(reader.received[0] as never)).toBe("via A");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("redelivers unacknowledged messages on the next stream and removes acknowledged ones", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    for (const t of ["m1", "m2", "m3"]) await sendTo(c, [bob], t);
    const first = connectDevice(inst.target, bob, { autoAck: false });
    await first.until(() => first.received.length === 3 && first.queueEmpty);
    await first.ack([first.received[0]?.id ?? ""]);
    await sleep(300);
    first.stream.cancel();
    await first.done;
    const second = connectDevice(inst.target, bob, { autoAck: false });
    await second.until(() => second.queueEmpty);
    expect(second.received.map(text)).toEqual(["m2", "m3"]);
  });

  test("displaces the first stream when the same device connects again, also on another instance", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const bob = await registerAccount(a.target);
    const first = connectDevice(a.target, bob);
    await first.until(() => first.queueEmpty);
    const second = connectDevice(b.target, bob);
    await second.until(() => second.queueEmpty);
    await first.until(() => first.displaced);
    const alice = await registerAccount(a.target);
    await sendTo(clientsFor(a.target, alice.auth), [bob], "to the newest");
    await second.until(() => second.received.length === 1);
    await sleep(200);
    expect(first.received).toHaveLength(0);
  });

  test("sends the sender a server delivery receipt when the recipient acknowledges", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const aliceReader = connectDevice(inst.target, alice);
    await aliceReader.until(() => aliceReader.queueEmpty);
    const cmid = randomUUID();
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "ack me", cmid);
    const bobReader = connectDevice(inst.target, bob);
    await bobReader.until(() => bobReader.received.length === 1);
    await aliceReader.until(() => aliceReader.received.length === 1);
    const receipt = aliceReader.received[0];
    expect(receipt?.type).toBe(EnvelopeType.SERVER_DELIVERY_RECEIPT);
    expect(receipt?.clientMessageId).toBe(cmid);
    expect(receipt?.source?.accountId).toBe(bob.accountId);
  });

  test("sends no server delivery receipt for a message sent with no_delivery_receipt", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const aliceReader = connectDevice(inst.target, alice);
    await aliceReader.until(() => aliceReader.queueEmpty);
    const c = clientsFor(inst.target, alice.auth);
    // Opted out: one unary send, one on a Connect stream (the service's own frame decoder).
    const unary = randomUUID();
    expect((await sendTo(c, [bob], "no receipt", unary, { noDeliveryReceipt: true })).result.case).toBe(
      "sent",
    );
    const streamed = randomUUID();
    const stream = c.messages.connect();
    const result = (async () => {
      for await (const f of stream.responses)
        if (f.frame.case === "sendResult")
          return f.frame.value.result.case === "send" ? f.frame.value.result.value : undefined;
      return undefined;
    })();
    await stream.send({
      frame: {
        case: "send",
        value: {
          correlationId: 1n,
          request: {
            destinationAccountId: bob.accountId,
            messages: [
              {
                deviceId: 1,
                registrationId: bob.registrationId,
                type: EnvelopeType.CIPHERTEXT,
                content: Buffer.from("streamed"),
              },
            ],
            clientMessageId: streamed,
            noDeliveryReceipt: true,
          },
        },
      },
    });
    expect((await result)?.result.case).toBe("sent");
    stream.end();
    // The last one asks for a receipt, so its arrival bounds when any other would have come.
    const wanted = randomUUID();
    await sendTo(c, [bob], "receipt please", wanted);
    const flags = await sql<{ client_message_id: string; flags: number }>`
      SELECT client_message_id, flags FROM queued_messages WHERE account_id = ${bob.accountId}`.execute(
      backend.db,
    );
    expect(Object.fromEntries(flags.rows.map((r) => [r.client_message_id, r.flags & 64]))).toEqual({
      [unary]: 64,
      [streamed]: 64,
      [wanted]: 0,
    });
    const bobReader = connectDevice(inst.target, bob);
    await bobReader.until(() => bobReader.received.length === 3);
    await aliceReader.until(() => aliceReader.received.length >= 1);
    await sleep(300);
    expect(aliceReader.received.map((e) => [e.type, e.clientMessageId])).toEqual([
      [EnvelopeType.SERVER_DELIVERY_RECEIPT, wanted],
    ]);
    const left = await sql<{ n: number }>`SELECT count(*)::int AS n FROM queued_messages`.execute(backend.db);
    expect(left.rows[0]?.n).toBe(0);
  });

  test("does not store ephemeral messages for offline devices and delivers them to connected ones", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const bob2 = await linkDevice(inst.target, bob);
    const online = connectDevice(inst.target, bob);
    await online.until(() => online.queueEmpty);
    const r = await sendTo(clientsFor(inst.target, alice.auth), [bob, bob2], "typing…", randomUUID(), {
      ephemeral: true,
    });
    expect(r.result.case).toBe("sent");
    await online.until(() => online.received.length === 1);
    expect(online.received[0]?.ephemeral).toBe(true);
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM queued_messages`.execute(backend.db);
    expect(rows.rows[0]?.n).toBe(0);
    const later = connectDevice(inst.target, bob2);
    await later.until(() => later.queueEmpty);
    await sleep(200);
    expect(later.received).toHaveLength(0);
  });

  test("refuses a gateway acting for an account of another app", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target, "whatsapp");
    const bob = await registerAccount(inst.target, "messenger");
    const messenger = clientsFor(inst.target, "Bearer ms-token-0123456789abcdef");
    const err = await messenger.messages
      .sendMessage({
        sender: { accountId: alice.accountId, deviceId: 1 },
        destinationAccountId: bob.accountId,
        messages: [],
        clientMessageId: "x",
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: "APP_MISMATCH" });
    const ok = await messenger.messages.sendMessage({
      sender: { accountId: bob.accountId, deviceId: 1 },
      destinationAccountId: alice.accountId,
      messages: [
        {
          deviceId: 1,
          registrationId: alice.registrationId,
          type: EnvelopeType.CIPHERTEXT,
          content: Buffer.from("cross-app"),
        },
      ],
      clientMessageId: randomUUID(),
    });
    expect(ok.result.case).toBe("sent");
  });

  test("rejects a ciphertext over MAX_CIPHERTEXT_BYTES with PAYLOAD_TOO_LARGE", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { MAX_CIPHERTEXT_BYTES: 1024 } });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const err = await sendTo(clientsFor(inst.target, alice.auth), [bob], "x".repeat(1025)).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: Code.InvalidArgument, reason: "PAYLOAD_TOO_LARGE" });
  });

  test("fails RECIPIENT_QUEUE_FULL once a device's queue reaches MAX_QUEUE_LENGTH", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { MAX_QUEUE_LENGTH: 10 } });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    for (let i = 0; i < 10; i++) await sendTo(c, [bob], `m${i}`);
    const err = await sendTo(c, [bob], "overflow").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.ResourceExhausted, reason: "RECIPIENT_QUEUE_FULL" });
  });

  test("after MAX_QUEUE_LENGTH messages in a device's life, the limit still counts only what is queued", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { MAX_QUEUE_LENGTH: 10 } });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    const drain = () =>
      sql`DELETE FROM queued_messages WHERE account_id = ${bob.accountId}`.execute(backend.db);
    // Three lifetimes of the limit, each drained (as acks would): the sequence runs far past it.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10; i++) await sendTo(c, [bob], `r${round}m${i}`);
      const full = await sendTo(c, [bob], "overflow").catch((e: unknown) => e);
      expect(full).toMatchObject({ code: Code.ResourceExhausted, reason: "RECIPIENT_QUEUE_FULL" });
      await drain();
    }
    // Partly drained: room for exactly what was removed.
    for (let i = 0; i < 10; i++) await sendTo(c, [bob], `last${i}`);
    await sql`DELETE FROM queued_messages WHERE account_id = ${bob.accountId} AND seq IN (
      SELECT seq FROM queued_messages WHERE account_id = ${bob.accountId} ORDER BY seq LIMIT 3)`.execute(
      backend.db,
    );
    for (let i = 0; i < 3; i++) await sendTo(c, [bob], `refill${i}`);
    const err = await sendTo(c, [bob], "overflow").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.ResourceExhausted, reason: "RECIPIENT_QUEUE_FULL" });
  });
});
