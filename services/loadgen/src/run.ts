// One load test: set up the population, offer traffic (open or closed loop), drain, verify and
// report.
import { randomInt } from "node:crypto";
import { cpus, hostname, loadavg, totalmem } from "node:os";
import type { Logger } from "pino";
import { createDeliveryDriver, errorKey } from "./drivers/delivery-driver.js";
import { createGatewayDriver } from "./drivers/gateway-driver.js";
import type { DeviceCopy, DeviceListener, Driver, IncomingMessage, SendResult } from "./drivers/driver.js";
import type { LoadgenOptions } from "./options.js";
import {
  createRandomPayloads,
  FLAG_GROUP,
  HEADER_BYTES,
  readHeader,
  withHeader,
  type PayloadHeader,
} from "./payload.js";
import { createProcSampler, type Snapshot } from "./proc-sampler.js";
import {
  cpuMicrosPerSend,
  writeReport,
  type ErrorCount,
  type LoadReport,
  type Phase,
  type ProcessReport,
  type TimelinePoint,
} from "./report.js";
import { createRng } from "./rng.js";
import { loadPopulation, populationKey, savePopulation } from "./population.js";
import { introducePopulation, registerPopulation, type Registered } from "./setup.js";
import { createSignalPools, type SignalPools } from "./signal-payloads.js";
import { probeLoopback } from "./machine-probe.js";
import { LatencyHistogram } from "./stats.js";
import { createTopology, type AppName } from "./topology.js";
import { Verifier } from "./verifier.js";

/** Where a run reports progress, and how it reaches the system. */
export interface RunIO {
  /** Receives the live progress line (every interval) and setup and drain status lines. */
  progress(line: string): void;
  /** Logger for the drivers (stream reconnects and the like). */
  log: Logger;
  /**
   * Aborting ends the traffic early (the run then drains and reports on the traffic so far);
   * during setup it fails the run.
   */
  signal?: AbortSignal;
  /** Builds the driver for `options.mode`; the default covers the delivery modes. */
  createDriver?: (options: LoadgenOptions, log: Logger) => Driver;
}

/** A finished run: its report and, with `outDir`, where it was written. */
export interface RunResult {
  report: LoadReport;
  files?: { json: string; html: string };
}

/** The driver for a mode. */
export function createDriver(options: LoadgenOptions, log: Logger): Driver {
  switch (options.mode) {
    case "gateways":
      return createGatewayDriver({
        targets: options.gateways,
        window: options.window,
        messengerSendOverSocket: options.messengerSends === "socket",
        whatsappConnections: options.whatsappConnections,
        whatsappChat: options.whatsappChat,
        sendTimeoutMs: options.sendTimeoutSeconds * 1000,
        log,
      });
    case "delivery-stream":
    case "delivery-unary":
      return createDeliveryDriver({
        mode: options.mode,
        target: options.target,
        appTokens: options.appTokens,
        streams: options.streams,
        window: options.window,
        sendTimeoutMs: options.sendTimeoutSeconds * 1000,
        log,
      });
  }
}

const SETTLE_MS = 300;
// Bytes of libsignal framing around a one-to-one plaintext (version, keys, counters, MAC, padding).
const SIGNAL_OVERHEAD_BYTES = 72;
const round = (x: number, digits = 0) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
const fmtMs = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sleeps `ms`, or less when `signal` aborts. */
function sleepUnless(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return sleep(ms).then(() => undefined);
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function checkNotAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Error("interrupted during setup");
}

/** A line-rate limiter for setup progress: at most one line per interval, plus the last one. */
function throttled(progress: (line: string) => void, intervalMs: number) {
  let last = 0;
  return (line: string, final: boolean) => {
    const now = performance.now();
    if (!final && now - last < intervalMs) return;
    last = now;
    progress(line);
  };
}

/**
 * Runs one load test against a running system and returns its report (also written to
 * `options.outDir` when set). Throws when setup fails (registration, subscriptions); traffic
 * problems are counted in the report instead.
 */
export async function runLoadTest(options: LoadgenOptions, io: RunIO): Promise<RunResult> {
  const o = options;
  const startedAt = new Date();
  const loadAverageAtStart = loadavg().map((x) => round(x, 2));
  const loopback = await probeLoopback();
  const runId = randomInt(1, 2 ** 32 - 1);
  // Every client message id of this run starts with it: `${runTag}.${sender}.${seq}`.
  const runTag = runId.toString(36);
  const runPrefix = `${runTag}.`;
  const topologyOptions = {
    devices: o.devices,
    devicesPerAccount: o.devicesPerAccount,
    mix: o.mix,
    groups: o.groups,
    groupSize: o.groupSize,
    seed: o.seed,
  };
  const saved = o.populationFile ? await loadPopulation(o.populationFile) : undefined;
  if (saved && populationKey(saved.topology) !== populationKey(topologyOptions))
    throw new Error(
      `${o.populationFile} holds another population (${populationKey(saved.topology)}); use the same options or another file`,
    );
  // A reused population keeps the seed it was derived with (registration ids, pairs, groups).
  const topology = createTopology(saved ? saved.topology : topologyOptions);
  const nDevices = topology.devices.length;
  const driver = (io.createDriver ?? createDriver)(o, io.log);
  const errors = new Map<string, ErrorCount>();
  const countError = (source: ErrorCount["source"], code: string, reason: string, n = 1) => {
    const key = `${source} ${code} ${reason}`;
    const e = errors.get(key);
    if (e) e.count += n;
    else errors.set(key, { source, code, reason, count: n });
    interval.errors += n;
  };

  // Counters of the current interval and of the measured window.
  const interval = { issued: 0, sent: 0, delivered: 0, receipts: 0, errors: 0 };
  const window = { sent: 0, delivered: 0, receipts: 0 };
  const totals = { issued: 0, groupSends: 0, delivered: 0, receipts: 0 };
  const intervalLatency = new LatencyHistogram();
  const endToEnd = new LatencyHistogram();
  const sendLatency = new LatencyHistogram();
  const issueLag = new LatencyHistogram();
  const verifier = new Verifier();
  let lastEventAt: number;
  // Traffic times (performance.now() ms), set when traffic starts.
  let t0 = Infinity;
  let tWarm = Infinity;
  let tEnd = Infinity;
  const phaseAt = (t: number): Phase => (t < tWarm ? "warmup" : t < tEnd ? "measure" : "drain");
  const inWindow = (t: number) => t >= tWarm && t < tEnd;

  /** Every recipient has a confirmed send (set up with the traffic: frees a closed-loop slot). */
  let onComplete = (): void => undefined;
  const onMessage = (device: number, m: IncomingMessage) => {
    const now = performance.now();
    lastEventAt = now;
    if (m.kind === "receipt") {
      // Receipts echo the acknowledged send's client id: those of an earlier run (a reused
      // population's leftovers) are not this run's.
      if (!m.clientMessageId.startsWith(runPrefix)) return;
      if (!options.serverReceipts) verifier.unwantedReceipt();
      interval.receipts++;
      totals.receipts++;
      if (inWindow(now)) window.receipts++;
      return;
    }
    const h = readHeader(m.content);
    if (!h || h.runId !== runId) {
      if (h && saved) verifier.earlierRunContent();
      else verifier.unrecognizedContent();
      return;
    }
    const v = verifier.received(device, m.envelopeId, h.sender, h.seq, h.watermark);
    if (v.kind !== "first") return;
    if (v.complete) onComplete();
    const latency = now - v.sentAt;
    interval.delivered++;
    totals.delivered++;
    intervalLatency.record(latency);
    if (inWindow(now)) window.delivered++;
    if (inWindow(v.sentAt)) endToEnd.record(latency);
  };

  const emptied = new Uint8Array(nDevices);
  let emptiedCount = 0;
  const listenerFor = (device: number): DeviceListener => ({
    onMessage: (m) => onMessage(device, m),
    onQueueEmpty() {
      if (emptied[device] === 0) {
        emptied[device] = 1;
        emptiedCount++;
      }
    },
    onError(code, reason) {
      countError("subscription", code, reason);
    },
  });

  let result: RunResult | undefined;
  const sampler = createProcSampler([{ name: "loadgen", pid: process.pid }, ...o.watch]);
  try {
    // --- setup ---
    const setupLine = throttled((line) => io.progress(line), o.intervalMs);
    const regStart = performance.now();
    let groupStart = regStart;
    let registered: Registered;
    if (saved) {
      registered = saved.registered;
      io.progress(
        `setup: reusing ${nDevices} devices and ${topology.groups.length} groups from ${o.populationFile}`,
      );
    } else {
      registered = await registerPopulation(driver, topology, {
        concurrency: o.registerConcurrency,
        runTag: runId % 1_000_000,
        onProgress(what, done, total) {
          const s = (performance.now() - (what === "devices" ? regStart : groupStart)) / 1000;
          if (what === "devices" && done === total) groupStart = performance.now();
          setupLine(
            `setup: registered ${done}/${total} ${what} (${round(done / Math.max(s, 1e-3))}/s)`,
            done === total,
          );
        },
      });
      if (o.populationFile) {
        await savePopulation(o.populationFile, {
          version: 1,
          savedAt: new Date().toISOString(),
          target: o.target,
          topology: topologyOptions,
          registered,
        });
        io.progress(`setup: population saved to ${o.populationFile}`);
      }
    }
    checkNotAborted(io.signal);
    const registrationSeconds = (groupStart - regStart) / 1000;
    const groupSeconds = (performance.now() - groupStart) / 1000;
    if (driver.introduce) {
      const introStart = performance.now();
      await introducePopulation(driver, topology, registered, {
        concurrency: o.registerConcurrency,
        reusedPopulation: saved !== undefined,
        onProgress: (done, total) =>
          setupLine(`setup: introduced ${done}/${total} devices to their peers`, done === total),
      });
      io.progress(`setup: introductions done in ${round((performance.now() - introStart) / 1000, 1)}s`);
    }

    let pools: SignalPools | undefined;
    if (o.payload === "signal") {
      pools = await createSignalPools(topology, registered, {
        poolSize: o.signalPoolSize,
        plaintextBytes: Math.max(1, o.sizeBytes - HEADER_BYTES - SIGNAL_OVERHEAD_BYTES),
        onProgress: (done, total) =>
          setupLine(`setup: signal sessions and sender keys ${done}/${total}`, done === total),
      });
      io.progress(
        `setup: ${pools.stats.ciphertexts} ciphertexts pre-encrypted in ${pools.stats.setupSeconds}s (mean ${pools.stats.meanDirectBytes} B one-to-one, ${pools.stats.meanGroupBytes} B group)`,
      );
    }

    checkNotAborted(io.signal);
    const subStart = performance.now();
    topology.devices.forEach((d) => driver.subscribe(registered.devices[d.index]!, listenerFor(d.index)));
    // Through the gateways each subscription is a connection with a token check: allow more time.
    const subscribeDeadline = subStart + Math.max(30_000, nDevices * (o.mode === "gateways" ? 200 : 20));
    while (emptiedCount < nDevices) {
      if (performance.now() > subscribeDeadline)
        throw new Error(
          `only ${emptiedCount} of ${nDevices} devices subscribed within ${round((subscribeDeadline - subStart) / 1000)} s`,
        );
      checkNotAborted(io.signal);
      const failed = [...errors.values()].find((e) => e.source === "subscription");
      if (failed)
        throw new Error(
          `subscribing devices failed: ${failed.code} ${failed.reason}${
            saved ? ` (is ${o.populationFile} from another database?)` : ""
          }`,
        );
      setupLine(`setup: subscribed ${emptiedCount}/${nDevices} devices`, false);
      await sleep(20);
    }
    const subscribeSeconds = (performance.now() - subStart) / 1000;
    io.progress(`setup: subscribed ${nDevices}/${nDevices} devices in ${round(subscribeSeconds, 1)}s`);

    // --- traffic ---
    const rng = createRng(o.seed ^ 0x5bd1e995);
    const seqs = new Uint32Array(nDevices);
    const prefix = new Uint32Array(nDevices);
    const outOfOrder = new Map<number, Set<number>>();
    const partnerDevices = topology.accounts.map((a) => topology.accounts[a.partner]?.devices ?? []);
    const groupRecipients = new Map<string, number[]>();
    const randomPayload = o.payload === "random" ? createRandomPayloads(o.sizeBytes) : undefined;
    const payloadBytes = { direct: 0, directCount: 0, group: 0, groupCount: 0 };
    let inflight = 0;
    /** Closed loop: sends holding a slot (until their result, or until delivered: `o.until`). */
    let open = 0;
    let maxInflight = 0;
    let maxBacklog = 0;
    let stopped = false;

    const resolveSeq = (s: number, seq: number) => {
      if (seq === (prefix[s] as number) + 1) {
        let p = seq;
        const set = outOfOrder.get(s);
        if (set) {
          while (set.delete(p + 1)) p++;
          if (set.size === 0) outOfOrder.delete(s);
        }
        prefix[s] = p;
      } else {
        let set = outOfOrder.get(s);
        if (!set) outOfOrder.set(s, (set = new Set()));
        set.add(seq);
      }
    };

    const onResult = (s: number, seq: number, intendedAt: number, r: SendResult) => {
      const now = performance.now();
      inflight--;
      lastEventAt = now;
      if (r.ok) {
        const delivered = verifier.confirmed(s, seq);
        if (delivered || o.until === "result") open--;
        interval.sent++;
        if (inWindow(now)) window.sent++;
        if (inWindow(intendedAt)) sendLatency.record(now - intendedAt);
      } else {
        verifier.failed(s, seq);
        countError("send", r.code, r.reason);
        open--;
      }
      resolveSeq(s, seq);
      refill();
    };

    const issue = (intendedAt: number) => {
      const now = performance.now();
      if (inWindow(intendedAt)) issueLag.record(now - intendedAt);
      const group =
        o.groupShare > 0 && rng.next() < o.groupShare
          ? topology.groups[rng.int(topology.groups.length)]
          : undefined;
      const s = group ? (group.devices[rng.int(group.devices.length)] as number) : rng.int(nDevices);
      const sim = topology.devices[s]!;
      let recipients: number[];
      if (group) {
        const key = `${group.index}:${s}`;
        recipients = groupRecipients.get(key) ?? group.devices.filter((d) => d !== s);
        groupRecipients.set(key, recipients);
      } else recipients = partnerDevices[sim.account] as number[];
      const seq = ++seqs[s]!;
      verifier.issued(s, seq, recipients, intendedAt);
      const header: PayloadHeader = {
        runId,
        sender: s,
        seq,
        watermark: prefix[s] as number,
        flags: group ? FLAG_GROUP : 0,
        intendedEpochMs: performance.timeOrigin + intendedAt,
      };
      const sender = registered.devices[s]!;
      const clientMessageId = `${runTag}.${s}.${seq}`;
      inflight++;
      open++;
      if (inflight > maxInflight) maxInflight = inflight;
      interval.issued++;
      totals.issued++;
      let p: Promise<SendResult>;
      try {
        if (group) {
          totals.groupSends++;
          const content = pools ? withHeader(header, pools.group(s, group.index)) : randomPayload!(header);
          payloadBytes.group += content.byteLength;
          payloadBytes.groupCount++;
          p = driver.sendGroup({
            sender,
            groupId: registered.groupIds[group.index]!,
            content,
            clientMessageId,
            clientTimestampMs: Date.now(),
          });
        } else {
          const shared = pools ? undefined : randomPayload!(header);
          const copies = recipients.map((r): DeviceCopy => {
            const dev = registered.devices[r]!;
            const pooled = pools?.direct(s, r);
            const content = pooled ? withHeader(header, pooled.body) : shared!;
            payloadBytes.direct += content.byteLength;
            payloadBytes.directCount++;
            return {
              deviceId: dev.deviceId,
              registrationId: dev.registrationId,
              type: pooled?.type ?? "ciphertext",
              content,
            };
          });
          const recipientAccount = topology.devices[recipients[0]!]!.account;
          p = driver.sendDirect({
            sender,
            recipientAccountId: registered.accountIds[recipientAccount]!,
            recipient: registered.devices[topology.accounts[recipientAccount]!.devices[0]!]!,
            copies,
            clientMessageId,
            clientTimestampMs: Date.now(),
            noDeliveryReceipt: !options.serverReceipts,
          });
        }
      } catch (err) {
        p = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      p.then(
        (r) => onResult(s, seq, intendedAt, r),
        (err: unknown) => onResult(s, seq, intendedAt, { ok: false, ...errorKey(err) }),
      );
    };

    // Open loop: send k is due at t0 + k * gap, whatever happened to earlier sends.
    const gapMs = 1000 / o.ratePerSecond;
    let planned = o.closedLoop ? 0 : Math.ceil(((o.warmupSeconds + o.durationSeconds) * 1000) / gapMs);
    let k = 0;
    const backlogAt = (now: number) =>
      o.closedLoop ? 0 : Math.max(0, Math.min(planned, Math.floor((now - t0) / gapMs) + 1) - k);
    const pumpOpen = () => {
      const now = performance.now();
      while (k < planned && inflight < o.inflight) {
        const at = t0 + k * gapMs;
        if (at > now) break;
        issue(at);
        k++;
      }
      const b = backlogAt(now);
      if (b > maxBacklog) maxBacklog = b;
    };
    onComplete = () => {
      if (o.until !== "delivered") return;
      open--;
      refill();
    };
    const refill = () => {
      if (o.closedLoop) {
        while (!stopped && open < o.inflight && performance.now() < tEnd) issue(performance.now());
      } else pumpOpen();
    };

    // Intervals: progress line and time series.
    const timeline: TimelinePoint[] = [];
    const snapshots: Array<{ phase: Phase; s: Snapshot }> = [];
    sampler.sample();
    let lastTick = performance.now();
    const tick = () => {
      const now = performance.now();
      const secs = Math.max(1e-3, (now - lastTick) / 1000);
      lastTick = now;
      const snap = sampler.sample();
      const phase = phaseAt(now - o.intervalMs / 2);
      snapshots.push({ phase, s: snap });
      const point: TimelinePoint = {
        tSeconds: round((now - t0) / 1000, 2),
        phase,
        issuedPerSecond: round(interval.issued / secs),
        sentPerSecond: round(interval.sent / secs),
        deliveredPerSecond: round(interval.delivered / secs),
        receiptsPerSecond: round(interval.receipts / secs),
        errors: interval.errors,
        inflight,
        backlog: backlogAt(now),
        latencyMs: {
          count: intervalLatency.count,
          p50: round(intervalLatency.percentileMs(50), 3),
          p99: round(intervalLatency.percentileMs(99), 3),
          max: round(intervalLatency.percentileMs(100), 3),
        },
        machineCpuPercent: snap.machineCpuPercent,
        processes: Object.fromEntries(
          snap.processes.map((p) => [
            p.name,
            { cpuPercent: p.cpuPercent, rssMB: round(p.rssBytes / 2 ** 20, 1) },
          ]),
        ),
      };
      timeline.push(point);
      const cpu = snap.processes
        .map((p) => `${p.name} ${p.alive ? `${round(p.cpuPercent)}%` : "gone"}`)
        .join(" ");
      io.progress(
        `[${String(Math.round(point.tSeconds)).padStart(4)}s ${phase.padEnd(7)}] ` +
          `issued ${point.issuedPerSecond}/s sent ${point.sentPerSecond}/s delivered ${point.deliveredPerSecond}/s ` +
          `e2e p50 ${fmtMs(point.latencyMs.p50)} p99 ${fmtMs(point.latencyMs.p99)} ms  inflight ${inflight}` +
          (o.closedLoop ? "" : ` backlog ${point.backlog}`) +
          `  errors ${interval.errors}  cpu ${cpu} machine ${snap.machineCpuPercent}%`,
      );
      interval.issued = interval.sent = interval.delivered = interval.receipts = interval.errors = 0;
      intervalLatency.reset();
    };

    t0 = performance.now();
    tWarm = t0 + o.warmupSeconds * 1000;
    tEnd = tWarm + o.durationSeconds * 1000;
    lastEventAt = t0;
    const ticker = setInterval(tick, o.intervalMs);
    io.progress(
      `traffic: ${o.closedLoop ? `closed loop, ${o.inflight} in flight until ${o.until}` : `open loop at ${o.ratePerSecond}/s`} for ${o.warmupSeconds}s warm-up + ${o.durationSeconds}s`,
    );
    if (o.closedLoop) {
      refill();
      await sleepUnless(tEnd - performance.now(), io.signal);
      stopped = true;
    } else {
      while (performance.now() < tEnd && k < planned && !io.signal?.aborted) {
        pumpOpen();
        await sleep(Math.max(0, Math.min(1, t0 + k * gapMs - performance.now())));
      }
    }
    const interrupted = io.signal?.aborted === true && performance.now() < tEnd;
    if (interrupted) {
      tEnd = performance.now();
      planned = k;
      io.progress("traffic: interrupted; draining");
    }
    const measuredSeconds = Math.max(0, (tEnd - tWarm) / 1000);
    const perSecond = (n: number) => (measuredSeconds > 0 ? round(n / measuredSeconds) : 0);

    // --- drain ---
    const drainStart = performance.now();
    let drainReason = "";
    while (!drainReason) {
      const now = performance.now();
      if (!o.closedLoop) pumpOpen();
      const backlog = o.closedLoop ? 0 : planned - k;
      if (backlog === 0 && inflight === 0 && verifier.outstanding === 0 && now - lastEventAt >= SETTLE_MS)
        drainReason = "complete";
      else if (now - lastEventAt >= o.drainQuietSeconds * 1000) drainReason = "quiet";
      else if (now - drainStart >= o.drainTimeoutSeconds * 1000) drainReason = "timeout";
      else await sleep(20);
    }
    await driver.flushAcks();
    clearInterval(ticker);
    // The last, partial interval (a sliver would show as a spurious drop to zero).
    if (performance.now() - lastTick >= o.intervalMs / 4) tick();
    const notIssued = o.closedLoop ? 0 : planned - k;
    if (notIssued > 0) countError("drain", "CLIENT", "NOT_ISSUED", notIssued);
    if (verifier.unresolved > 0) countError("drain", "CLIENT", "NO_SEND_RESULT", verifier.unresolved);
    io.progress(
      `drain: ${drainReason} after ${round((performance.now() - drainStart) / 1000, 1)}s (${verifier.outstanding} deliveries still owed, ${inflight} sends without result)`,
    );

    // --- report ---
    const verification = verifier.report();
    const measured = snapshots.filter((x) => x.phase === "measure");
    const basis = measured.length > 0 ? measured : snapshots;
    const sendsPerSecond = perSecond(window.sent);
    const processes: ProcessReport[] = [{ name: "loadgen", pid: process.pid }, ...o.watch].map((w, i) => {
      const samples = basis.map((x) => x.s.processes[i]).filter((p) => p !== undefined && p.alive);
      const pids = new Set<number>();
      for (const x of snapshots) for (const p of x.s.processes[i]?.pids ?? []) pids.add(p);
      const cpu = samples.map((p) => p!.cpuPercent);
      const rss = samples.map((p) => p!.rssBytes / 2 ** 20);
      const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
      return {
        name: w.name,
        pid: w.pid,
        pids: [...pids].sort((a, b) => a - b),
        cpuPercent: { mean: round(mean(cpu), 1), max: round(Math.max(0, ...cpu), 1) },
        cpuMicrosPerSend: cpuMicrosPerSend(mean(cpu), sendsPerSecond),
        rssMB: {
          mean: round(mean(rss), 1),
          max: round(Math.max(0, ...rss), 1),
          last: round(rss.at(-1) ?? 0, 1),
        },
      };
    });
    const machineCpu = basis.map((x) => x.s.machineCpuPercent);
    const errorList = [...errors.values()].sort((a, b) => b.count - a.count);
    const errorTotal = errorList.reduce((n, e) => n + e.count, 0);
    const passed = verification.passed && errorTotal === 0;
    const accountsPerApp: Partial<Record<AppName, number>> = {};
    for (const a of topology.accounts) accountsPerApp[a.app] = (accountsPerApp[a.app] ?? 0) + 1;
    const { appTokens: _tokens, ...publicOptions } = o;
    const report: LoadReport = {
      tool: "@switchboard/loadgen",
      reportVersion: 1,
      name: o.name,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      passed,
      exitCode: passed ? 0 : 1,
      machine: {
        hostname: hostname(),
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        memoryBytes: totalmem(),
        node: process.version,
        loadAverageAtStart,
        loadAverageAtEnd: loadavg().map((x) => round(x, 2)),
        loopback,
      },
      options: { ...publicOptions, apps: Object.keys(o.appTokens) as AppName[] },
      setup: {
        accounts: topology.accounts.length,
        devices: nDevices,
        accountsPerApp,
        conversations: topology.accounts.length,
        groups: topology.groups.length,
        groupMemberAccounts: topology.groups.reduce((n, g) => n + g.members.length, 0),
        reusedPopulation: saved !== undefined,
        registrationSeconds: round(registrationSeconds, 1),
        devicesRegisteredPerSecond: round(nDevices / Math.max(registrationSeconds, 1e-3), 1),
        groupSeconds: round(groupSeconds, 1),
        subscribeSeconds: round(subscribeSeconds, 1),
        meanPayloadBytes: {
          direct: round(payloadBytes.direct / Math.max(1, payloadBytes.directCount)),
          group: round(payloadBytes.group / Math.max(1, payloadBytes.groupCount)),
        },
        ...(pools ? { signal: pools.stats } : {}),
      },
      traffic: {
        loop: o.closedLoop ? "closed" : "open",
        offeredPerSecond: o.closedLoop ? null : o.ratePerSecond,
        interrupted,
        measuredSeconds: round(measuredSeconds, 2),
        sendsPerSecond,
        deliveriesPerSecond: perSecond(window.delivered),
        receiptsPerSecond: perSecond(window.receipts),
        totals: {
          issued: totals.issued,
          groupSends: totals.groupSends,
          confirmed: verification.sends.confirmed,
          failed: verification.sends.failed,
          deliveries: totals.delivered,
          receipts: totals.receipts,
        },
        maxInflight,
        maxBacklog,
        retries: driver.retries ?? 0,
        reconnects: driver.reconnects ?? 0,
        issueLagMs: issueLag.summary(),
      },
      latency: { endToEnd: endToEnd.summary(), send: sendLatency.summary() },
      verification,
      errors: { total: errorTotal, byReason: errorList },
      processes,
      machineCpuPercent: {
        mean: round(machineCpu.reduce((a, b) => a + b, 0) / Math.max(1, machineCpu.length), 1),
        max: round(Math.max(0, ...machineCpu), 1),
      },
      timeline,
    };
    result = { report };
    if (o.outDir) result.files = await writeReport(report, o.outDir);
  } finally {
    await driver.close();
  }
  return result;
}
