import { spawn, type ChildProcess } from "node:child_process";
import { Code } from "@switchboard/errors";
import { createRedisFanout } from "@switchboard/fanout";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  appAuth,
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

async function startRedis(port: number): Promise<ChildProcess> {
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const ok = await new Promise<boolean>((resolve) => {
      const p = spawn("redis-cli", ["-p", String(port), "ping"], { stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      p.stdout.on("data", (d: Buffer) => (out += d.toString()));
      p.on("close", () => resolve(out.includes("PONG")));
    });
    if (ok) return proc;
  }
  proc.kill("SIGKILL");
  throw new Error(`redis-server on port ${port} did not start (is redis-server on PATH?)`);
}

const stopRedis = (proc: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (proc.exitCode !== null) return resolve();
    proc.once("exit", () => resolve());
    proc.kill("SIGKILL");
  });

describe("resilience", () => {
  test("recovers after a Redis restart: streams re-read PostgreSQL and nothing is lost or stuck", async () => {
    const port = 21000 + Math.floor(Math.random() * 9000);
    let redis = await startRedis(port);
    onTestFinished(() => stopRedis(redis));
    const backend = await createBackend();
    const url = `redis://127.0.0.1:${port}`;
    const a = await startInstance(backend, { redis: url });
    const b = await startInstance(backend, { redis: url });
    const alice = await registerAccount(a.target);
    const bob = await registerAccount(a.target);
    const reader = connectDevice(b.target, bob);
    await reader.until(() => reader.queueEmpty);
    await sendTo(clientsFor(a.target, alice.auth), [bob], "before");
    await reader.until(() => reader.received.length === 1);

    await stopRedis(redis);
    // Sent while Redis is down: committed, but its wake-up is lost.
    await sendTo(clientsFor(a.target, alice.auth), [bob], "during");
    redis = await startRedis(port);
    await reader.until(() => reader.received.length === 2, 20_000);
    await sendTo(clientsFor(a.target, alice.auth), [bob], "after");
    await reader.until(() => reader.received.length === 3, 20_000);
    expect(reader.received.map(text)).toEqual(["before", "during", "after"]);
  });

  test("a removed device loses access at once and its stream ends", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const bob = await registerAccount(a.target);
    const bob2 = await linkDevice(a.target, bob);
    // Warm the credential cache on both instances.
    await clientsFor(a.target, bob2.auth).keys.getPreKeyCount({});
    await clientsFor(b.target, bob2.auth).keys.getPreKeyCount({});
    const reader = connectDevice(b.target, bob2);
    await reader.until(() => reader.queueEmpty);
    await clientsFor(a.target, appAuth("whatsapp")).directory.removeDevice({
      accountId: bob.accountId,
      deviceId: bob2.deviceId,
    });
    await reader.until(() => reader.displaced);
    await sleep(200);
    for (const target of [a.target, b.target]) {
      const err = await clientsFor(target, bob2.auth)
        .keys.getPreKeyCount({})
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: Code.Unauthenticated });
    }
  });

  test("the periodic poll reads no idle queue: it probes them all in one statement", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { STREAM_POLL_MS: 200 }, metrics: true });
    const queueReads = async () => {
      const body = await (await fetch(`http://127.0.0.1:${inst.metricsPort}/metrics`)).text();
      return Number(/^switchboard_queue_reads_total\{[^}]*\} (\d+)/m.exec(body)?.[1]);
    };
    const alice = await registerAccount(inst.target);
    const idle = await Promise.all(Array.from({ length: 5 }, () => registerAccount(inst.target)));
    const readers = idle.map((d) => connectDevice(inst.target, d));
    for (const r of readers) await r.until(() => r.queueEmpty);
    const before = await queueReads();
    expect(before).toBeGreaterThanOrEqual(5); // each backlog read
    // Ten poll periods: every queue is probed, none holds anything, so none is read.
    await sleep(2_000);
    expect(await queueReads()).toBe(before);
    // A message whose wake-up is lost is still found by the probe and read.
    const publish = inst.fanout.publish.bind(inst.fanout);
    inst.fanout.publish = async () => {};
    await sendTo(clientsFor(inst.target, alice.auth), [idle[2]!], "found by the poll");
    inst.fanout.publish = publish;
    const reader = readers[2]!;
    await reader.until(() => reader.received.length === 1, 5_000);
    expect(reader.received.map(text)).toEqual(["found by the poll"]);
    expect(await queueReads()).toBe(before + 1);
  });

  test("recovers a lost wake-up by the periodic re-read of the queue", async () => {
    const backend = await createBackend();
    const fanout = await createRedisFanout({ url: "redis://127.0.0.1:6379", keyPrefix: backend.prefix });
    const inst = await startInstance(backend, { fanout, config: { STREAM_POLL_MS: 300 } });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const reader = connectDevice(inst.target, bob);
    await reader.until(() => reader.queueEmpty);
    // Drop this one wake-up on the floor, as a Redis hiccup would.
    const publish = fanout.publish.bind(fanout);
    fanout.publish = async () => {};
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "lost wake-up");
    fanout.publish = publish;
    await reader.until(() => reader.received.length === 1, 5_000);
    onTestFinished(() => fanout.close());
  });
});
