import { randomUUID } from "node:crypto";
import { EnvelopeType } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { clientsFor, connectDevice, createBackend, registerAccount, startInstance, text } from "./harness.js";

describe("per-device ordering", () => {
  test("delivers every message once, in per-sender order with no gaps, while senders race a draining reader", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const bob = await registerAccount(a.target);
    const senders = await Promise.all(Array.from({ length: 6 }, () => registerAccount(a.target)));
    const PER_SENDER = 60;

    // Half the backlog is queued before the reader connects; the rest races its drain.
    const sendRun = async (i: number, from: number, to: number) => {
      const s = senders[i] as { auth: string };
      const stream = clientsFor(i % 2 === 0 ? a.target : b.target, s.auth).messages.connect();
      const pending = new Map<number, () => void>();
      const reader = (async () => {
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
      await reader;
    };
    await Promise.all(senders.map((_, i) => sendRun(i, 0, PER_SENDER / 2)));
    const reader = connectDevice(b.target, bob, { window: 7 });
    await Promise.all(senders.map((_, i) => sendRun(i, PER_SENDER / 2, PER_SENDER)));
    await reader.until(() => reader.received.length >= senders.length * PER_SENDER, 30_000);

    const seqs = reader.received.map((e) => Number(e.sequence));
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(reader.received.map((e) => e.id)).size).toBe(reader.received.length);
    expect(reader.received).toHaveLength(senders.length * PER_SENDER);
    const perSender = new Map<string, number[]>();
    for (const e of reader.received) {
      const [s, n] = text(e).split(":");
      perSender.set(s as string, [...(perSender.get(s as string) ?? []), Number(n)]);
    }
    for (const list of perSender.values())
      expect(list).toEqual(Array.from({ length: PER_SENDER }, (_, n) => n));
  });
});
