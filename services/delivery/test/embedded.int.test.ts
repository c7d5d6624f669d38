import { randomUUID } from "node:crypto";
import { createMemoryFanout } from "@switchboard/fanout";
import { EnvelopeType } from "@switchboard/proto";
import { createEmbeddedDatabase, migrateToLatest, type Database } from "@switchboard/storage";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { clientsFor, connectDevice, registerAccount, sendTo, startInstance, text } from "./harness.js";

// The delivery service over embedded PostgreSQL (PGlite, one connection shared by every commit
// lane and ack batch) and the in-process fan-out bus: the one-command mode, with no DATABASE_URL
// or REDIS_URL. One PGlite per file (it takes seconds to start); each test uses fresh accounts.
describe("delivery on embedded PostgreSQL", () => {
  let db: Kysely<Database> | undefined;
  beforeAll(async () => {
    db = await createEmbeddedDatabase({ dataDir: "memory://" });
    await migrateToLatest(db);
  });
  afterAll(async () => {
    await db?.destroy();
  });

  async function start() {
    if (!db) throw new Error("the embedded database is not open");
    const fanout = createMemoryFanout();
    onTestFinished(() => fanout.close());
    return { db, inst: await startInstance({ db, prefix: "" }, { fanout }) };
  }

  test("registers, sends, streams, acknowledges and returns a delivery receipt", async () => {
    const { db, inst } = await start();
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const aliceReader = connectDevice(inst.target, alice);
    await aliceReader.until(() => aliceReader.queueEmpty);

    const cmid = randomUUID();
    const r = await sendTo(clientsFor(inst.target, alice.auth), [bob], "hello over pglite", cmid);
    expect(r.result.case).toBe("sent");
    const bobReader = connectDevice(inst.target, bob); // acknowledges what it receives
    await bobReader.until(() => bobReader.received.length === 1 && bobReader.queueEmpty);
    const env = bobReader.received[0];
    expect(env && text(env)).toBe("hello over pglite");
    expect(env?.source?.accountId).toBe(alice.accountId);

    await aliceReader.until(() => aliceReader.received.length === 1);
    const receipt = aliceReader.received[0];
    expect(receipt?.type).toBe(EnvelopeType.SERVER_DELIVERY_RECEIPT);
    expect(receipt?.clientMessageId).toBe(cmid);
    expect(receipt?.source?.accountId).toBe(bob.accountId);
    // The receipt is built from the rows the ack deleted: Bob's queue is empty.
    const left = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${bob.accountId}
    `.execute(db);
    expect(left.rows[0]?.n).toBe(0);
    // The queue-depth gauge reads pg_stat_user_tables, which PGlite has (an estimate, as on PostgreSQL).
    expect(await inst.app.metrics.registry.getSingleMetricAsString("switchboard_queue_depth")).toMatch(
      /switchboard_queue_depth\{instance="test"\} \d+/,
    );
  });

  test("delivers concurrent sends from several senders once each, in per-sender order", async () => {
    const { inst } = await start();
    const bob = await registerAccount(inst.target);
    const senders = await Promise.all(Array.from({ length: 4 }, () => registerAccount(inst.target)));
    const PER_SENDER = 30;

    // Each sender pipelines its sends on one Connect stream; a reader with a small window drains
    // while the second half races it.
    const sendRun = async (i: number, from: number, to: number) => {
      const stream = clientsFor(inst.target, (senders[i] as { auth: string }).auth).messages.connect();
      const pending = new Map<number, () => void>();
      const results = (async () => {
        for await (const f of stream.responses) {
          if (f.frame.case === "sendResult") {
            expect(f.frame.value.result.case).toBe("send");
            pending.get(Number(f.frame.value.correlationId))?.();
          }
        }
      })();
      const done: Promise<void>[] = [];
      for (let n = from; n < to; n++) {
        done.push(new Promise<void>((resolve) => pending.set(n, resolve)));
        await stream.send({
          frame: {
            case: "send",
            value: {
              correlationId: BigInt(n),
              request: {
                destinationAccountId: bob.accountId,
                messages: [
                  {
                    deviceId: 1,
                    registrationId: bob.registrationId,
                    type: EnvelopeType.CIPHERTEXT,
                    content: Buffer.from(`${i}:${n}`),
                  },
                ],
                clientMessageId: randomUUID(),
              },
            },
          },
        });
      }
      await Promise.all(done);
      stream.end();
      await results;
    };
    await Promise.all(senders.map((_, i) => sendRun(i, 0, PER_SENDER / 2)));
    const reader = connectDevice(inst.target, bob, { window: 7 });
    await Promise.all(senders.map((_, i) => sendRun(i, PER_SENDER / 2, PER_SENDER)));
    await reader.until(() => reader.received.length >= senders.length * PER_SENDER, 30_000);

    expect(reader.received).toHaveLength(senders.length * PER_SENDER);
    const seqs = reader.received.map((e) => Number(e.sequence));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, k) => k + 1));
    const perSender = new Map<string, number[]>();
    for (const e of reader.received) {
      const [s, n] = text(e).split(":");
      perSender.set(s as string, [...(perSender.get(s as string) ?? []), Number(n)]);
    }
    expect(perSender.size).toBe(senders.length);
    for (const list of perSender.values())
      expect(list).toEqual(Array.from({ length: PER_SENDER }, (_, n) => n));
  });
});
