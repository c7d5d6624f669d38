// Publish throughput of the Redis fanout for batches of 1, 100 and 1000 events (64-byte payloads,
// 1000 distinct devices, no subscribers, each batch awaited before the next).
//
//   npx tsx bench/publish.ts            (REDIS_URL, else redis://127.0.0.1:6379)
//   pnpm --filter @switchboard/fanout bench
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import type { FanoutEvent } from "../src/index.js";

const SOURCE_CONDITION = "switchboard-source";

// Workspace packages resolve to their TypeScript sources only under this export condition,
// which plain `tsx` does not set: run again with it.
if (![...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((arg) => arg.includes(SOURCE_CONDITION))) {
  const script = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, `--conditions=${SOURCE_CONDITION}`, script, ...process.argv.slice(2)];
  const { status } = spawnSync(process.execPath, args, { stdio: "inherit" });
  process.exit(status ?? 1);
}

const { createRedisFanout } = await import("../src/index.js");
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const fanout = await createRedisFanout({ url, keyPrefix: `bench${randomBytes(4).toString("hex")}:` });

const accounts = Array.from({ length: 100 }, () => randomUUID());
const events: FanoutEvent[] = Array.from({ length: 1000 }, (_, i) => ({
  key: { accountId: accounts[i % accounts.length] ?? "", deviceId: Math.floor(i / accounts.length) },
  payload: new Uint8Array(randomBytes(64)),
}));

async function run(batchSize: number, totalEvents: number): Promise<number> {
  const started = performance.now();
  for (let sent = 0; sent < totalEvents; sent += batchSize) {
    const offset = sent % events.length;
    await fanout.publish(events.slice(offset, offset + batchSize));
  }
  return totalEvents / ((performance.now() - started) / 1000);
}

console.log(`redis ${url}`);
for (const [batchSize, totalEvents] of [
  [1, 20_000],
  [100, 200_000],
  [1000, 500_000],
] as const) {
  await run(batchSize, Math.min(totalEvents, 10 * batchSize)); // warm-up
  const eventsPerSecond = await run(batchSize, totalEvents);
  const roundTripsPerSecond = eventsPerSecond / batchSize;
  console.log(
    `batch ${String(batchSize).padStart(4)}: ${Math.round(eventsPerSecond).toLocaleString("en-US").padStart(9)} events/s` +
      `  (${Math.round(roundTripsPerSecond).toLocaleString("en-US")} publish calls/s, ${totalEvents.toLocaleString("en-US")} events)`,
  );
}
await fanout.close();
