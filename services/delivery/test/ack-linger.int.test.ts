import type { Database } from "@switchboard/storage";
import { sql, type Kysely } from "kysely";
import { expect, test } from "vitest";
import {
  clientsFor,
  connectDevice,
  createBackend,
  registerAccount,
  sendTo,
  startInstance,
} from "./harness.js";

/** `switchboard_ack_batch_size` count and sum from the instance's metrics endpoint. */
async function ackBatches(metricsPort: number | undefined) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
  return { batches: value("switchboard_ack_batch_size_count"), ids: value("switchboard_ack_batch_size_sum") };
}

async function queued(db: Kysely<Database>, accountId: string): Promise<number> {
  const r = await sql<{
    n: number;
  }>`SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${accountId}`.execute(db);
  return r.rows[0]?.n ?? 0;
}

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

test.each([
  { lingerMs: 300, batches: 1 },
  { lingerMs: 0, batches: 5 },
])(
  "acks reaching an idle pipeline together share one DELETE when they may linger ($lingerMs ms: $batches)",
  async ({ lingerMs, batches }) => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { metrics: true, config: { ACK_LINGER_MS: lingerMs } });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    for (let i = 0; i < 5; i++) await sendTo(c, [bob], `m${i}`);
    const reader = connectDevice(inst.target, bob, { autoAck: false });
    await reader.until(() => reader.received.length === 5 && reader.queueEmpty);

    // Five ack frames back to back; without a linger each is also awaited until its row is gone,
    // so each must have had its own DELETE.
    for (const [i, env] of reader.received.entries()) {
      await reader.stream.send({
        frame: {
          case: "ack",
          value: { device: { accountId: bob.accountId, deviceId: bob.deviceId }, messageIds: [env.id] },
        },
      });
      if (lingerMs === 0) await until(async () => (await queued(backend.db, bob.accountId)) === 4 - i);
    }
    await until(async () => (await queued(backend.db, bob.accountId)) === 0);
    expect(await ackBatches(inst.metricsPort)).toEqual({ batches, ids: 5 });
    // Every acknowledged message still gives its sender a receipt.
    await until(async () => (await queued(backend.db, alice.accountId)) === 5);
  },
);
