// Fault 6: stalled consumers. A Messenger-style WebSocket client stops reading its socket (and so
// never acks), a WhatsApp-style Chat client reads but never acks; thousands of large messages are
// queued for them. The gateway and delivery processes' memory stays bounded (the delivery window
// bounds unacknowledged envelopes per device; the Messenger gateway drops a socket holding more
// than WS_MAX_BUFFERED_BYTES unsent), and once the consumers resume they get every message once.
import { performance } from "node:perf_hooks";
import { cloneTemplateDatabase } from "@switchboard/testkit";
import { describe, expect, onTestFinished, test } from "vitest";
import WebSocket from "ws";
import {
  expectClean,
  memoryOf,
  payloadOf,
  Receiver,
  registerDevices,
  RetrySlots,
  runTagOf,
  sendWithRetry,
  startGateway,
  tally,
  waitFor,
  type FaultDevice,
  type SendLedger,
} from "./gateways.js";
import { sleep, startDelivery, startPrivateRedis } from "./harness.js";

function envNumber(name: string, fallback: number): number {
  const n = Number(process.env[name] ?? "");
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/**
 * CI form: 600 messages of 64 KiB for the stalled socket (37.5 MiB) and a third of that for the
 * never-acking device; FAULT_SLOW_MESSAGES and FAULT_SLOW_SIZE scale it.
 */
const wsMessages = Math.round(envNumber("FAULT_SLOW_MESSAGES", 600));
const SLOW = {
  perConsumer: [wsMessages, Math.max(2 * 100, Math.round(wsMessages / 3))],
  sizeBytes: Math.round(envNumber("FAULT_SLOW_SIZE", 64 * 1024)),
  senders: 8,
};
/** The Messenger gateway's per-socket unsent-bytes limit in this run. */
const WS_LIMIT_BYTES = 1024 * 1024;
/** The WhatsApp gateway's Chat window (limits.chatWindow). */
const CHAT_WINDOW = 100;
const MiB = 2 ** 20;

const progress = (line: string) => {
  if (process.env.FAULT_PROGRESS === "1") console.error(`[slow-consumer] ${line}`);
};

interface MemoryPeak {
  name: string;
  url: string;
  base: { rssMiB: number; heapMiB: number };
  peak: { rssMiB: number; heapMiB: number };
}

describe("fault: slow consumers", () => {
  test("a stalled socket and a never-acking device do not grow server memory; they get everything after resuming", async () => {
    const db = await cloneTemplateDatabase();
    onTestFinished(() => db.drop());
    const redis = await startPrivateRedis();
    const delivery = await startDelivery("faults-delivery-slow", db.url, redis.url);
    const [ms, wa] = await Promise.all([
      startGateway("messenger", db.url, delivery.target, { WS_MAX_BUFFERED_BYTES: String(WS_LIMIT_BYTES) }),
      startGateway("whatsapp", db.url, delivery.target),
    ]);
    const [[wsConsumer], [chatConsumer], senders] = await Promise.all([
      registerDevices(ms, "stalled-ws", 1),
      registerDevices(wa, "never-acks", 1),
      registerDevices(ms, "sender", SLOW.senders, 3),
    ]);
    const runTag = runTagOf();

    // The WebSocket consumer: a raw socket that stops reading right after the upgrade.
    const token = (wsConsumer!.transport as { accessToken?: string }).accessToken;
    const stalled = new WebSocket(`${ms.target.replace(/^http/, "ws")}/v1/stream?window=1000`, {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    stalled.on("error", () => undefined);
    await new Promise<void>((resolve, reject) => {
      stalled.once("open", () => resolve());
      stalled.once("error", reject);
    });
    (stalled as unknown as { _socket: { pause(): void } })._socket.pause();
    onTestFinished(() => stalled.terminate());

    // The Chat consumer reads but holds every ack.
    const chat = new Receiver(chatConsumer!, runTag, { initial: 250, max: 5_000 });
    chat.holdAcks = true;
    chat.start();
    onTestFinished(() => chat.stop());
    expect(await waitFor(() => chat.stats.drained >= 1, 60_000)).toBe(true);

    const watched: MemoryPeak[] = [];
    for (const [name, url] of [
      ["delivery", delivery.metricsUrl],
      ["gateway-messenger", ms.metricsUrl],
      ["gateway-whatsapp", wa.metricsUrl],
    ] as const) {
      const base = await memoryOf(url);
      watched.push({ name, url, base, peak: { ...base } });
    }
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const w of watched) {
          const m = await memoryOf(w.url).catch(() => undefined);
          if (!m) continue;
          w.peak.rssMiB = Math.max(w.peak.rssMiB, m.rssMiB);
          w.peak.heapMiB = Math.max(w.peak.heapMiB, m.heapMiB);
        }
        await sleep(250);
      }
    })();

    // The flood: SLOW.perConsumer[i] for consumer i, from SLOW.senders senders in parallel.
    const ledger: SendLedger = {
      issued: new Map(),
      acked: new Set(),
      failed: new Map(),
      retries: 0,
      serverDeduplicated: 0,
      maxSendMs: 0,
      retrySlots: new RetrySlots(32),
    };
    const consumers: FaultDevice[] = [wsConsumer!, chatConsumer!];
    const tFlood = performance.now();
    const plan = SLOW.perConsumer.flatMap((n, to) => Array.from({ length: n }, () => to));
    await Promise.all(
      senders.map(async (sender, s) => {
        for (let seq = 1; (seq - 1) * SLOW.senders + s < plan.length; seq++) {
          const to = plan[(seq - 1) * SLOW.senders + s] as number;
          const key = `${s}.${seq}`;
          ledger.issued.set(key, to);
          await sendWithRetry(
            sender,
            consumers[to]!,
            payloadOf(runTag, s, seq, SLOW.sizeBytes),
            `${runTag}.${key}`,
            ledger,
            key,
          );
        }
      }),
    );
    const floodMs = performance.now() - tFlood;
    progress(`flooded ${ledger.acked.size} messages in ${Math.round(floodMs)} ms`);
    // Let whatever the servers would buffer pile up, then read the stalled state.
    await sleep(1_500);
    const heldByChat = chat.stats.received.size;
    // The paused client cannot see its socket close (it reads nothing): ask the gateway's log.
    const wsDropped = ms.process.output().includes("slow consumer disconnected");
    sampling = false;
    await sampler;

    // Resume: the WebSocket client reads again (its socket was dropped: it reconnects with the
    // SDK transport), the Chat client acknowledges what it held.
    (stalled as unknown as { _socket: { resume(): void } })._socket.resume();
    stalled.terminate();
    const wsReceiver = new Receiver(wsConsumer!, runTag, { initial: 250, max: 5_000 });
    wsReceiver.start();
    onTestFinished(() => wsReceiver.stop());
    await chat.releaseAcks();
    const receivers = [wsReceiver, chat];
    const ackLoop = (async () => {
      // The chat consumer acknowledges as it goes from now on (holdAcks is off).
      while (tally(ledger, receivers).lost > 0) await sleep(100);
    })();
    const complete = await Promise.race([ackLoop.then(() => true), sleep(120_000).then(() => false)]);
    await sleep(500);
    const t = tally(ledger, receivers);
    const mem = watched
      .map(
        (w) =>
          `${w.name}: rss ${w.base.rssMiB.toFixed(0)}->${w.peak.rssMiB.toFixed(0)} MiB,` +
          ` heap ${w.base.heapMiB.toFixed(0)}->${w.peak.heapMiB.toFixed(0)} MiB`,
      )
      .join("; ");
    const queuedMiB = ((SLOW.perConsumer[0]! + SLOW.perConsumer[1]!) * SLOW.sizeBytes) / MiB;
    const wsQueuedMiB = (SLOW.perConsumer[0]! * SLOW.sizeBytes) / MiB;
    console.log(
      `fault=slow-consumer sent=${t.sent} acked=${t.acked} delivered=${t.delivered} lost=${t.lost}` +
        ` duplicated=${t.duplicated} (failed=${t.failed} redeliveries=${t.redeliveries}` +
        ` queuedMiB=${queuedMiB.toFixed(0)} floodMs=${Math.round(floodMs)}` +
        ` chatHeldUnacked=${heldByChat} wsDroppedAsSlow=${wsDropped}) memory peak during the stall: ${mem}`,
    );

    expect(complete).toBe(true);
    expectClean(t);
    expect(t.failed).toBe(0);
    // The never-acking device got exactly one window of envelopes, no more.
    expect(heldByChat).toBe(CHAT_WINDOW);
    // The stalled socket was dropped by the gateway rather than buffered without bound.
    expect(wsDropped).toBe(true);
    // Memory did not follow the backlog: each process grew by well under what was queued (half of
    // it; holding it would take all of it, and more as JSON/base64 for the WebSocket).
    for (const w of watched) expect(w.peak.heapMiB - w.base.heapMiB).toBeLessThan(queuedMiB / 2);
    const msGrowth = watched.find((w) => w.name === "gateway-messenger")!;
    expect(msGrowth.peak.heapMiB - msGrowth.base.heapMiB).toBeLessThan(wsQueuedMiB * 0.6);
  }, 600_000);
});
