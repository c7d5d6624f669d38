// Fault 3: stop PostgreSQL for a few seconds mid-load. Never the machine's shared server: a
// private PostgreSQL 15 cluster on a free loopback port in a temporary directory, run as the
// `postgres` user, migrated, stopped (`pg_ctl stop -m fast`) and started again mid-run.
import { execFile } from "node:child_process";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { migrateUrl } from "@switchboard/storage";
import { freePort } from "@switchboard/testkit/service-process";
import { describe, expect, onTestFinished, test } from "vitest";
import {
  loadOptions,
  runWithFault,
  SCALE,
  sleep,
  splitDriver,
  startDelivery,
  startPrivateRedis,
  verdict,
} from "./harness.js";

const run = promisify(execFile);
const PG_BIN = process.env.FAULT_PG_BIN ?? "/usr/lib/postgresql/15/bin";

/** Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root). */
async function pg(tool: string, args: string[]): Promise<void> {
  const path = join(PG_BIN, tool);
  if (userInfo().uid === 0)
    await run("runuser", ["-u", "postgres", "--", path, ...args], { timeout: 60_000 });
  else await run(path, args, { timeout: 60_000 });
}

interface PrivatePostgres {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = await mkdtemp(join(tmpdir(), "faults-pg-"));
  if (userInfo().uid === 0) {
    const { stdout } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = join(dir, "data");
  const port = await freePort();
  await pg("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
  const start = () => pg("pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
  const stop = () => pg("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
  await start();
  onTestFinished(async () => {
    await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, start, stop };
}

// Runs by default; FAULT_POSTGRES=0 skips it (e.g. where /usr/lib/postgresql/15/bin is missing).
const enabled = process.env.FAULT_POSTGRES !== "0";

describe("fault: stop PostgreSQL", () => {
  test.skipIf(!enabled)(
    "sends fail while PostgreSQL is down, never falsely succeed, and every acknowledged message is delivered once",
    async () => {
      const postgres = await startPrivatePostgres();
      await migrateUrl(postgres.url);
      const redis = await startPrivateRedis();
      const a = await startDelivery("faults-pg-a", postgres.url, redis.url);
      const b = await startDelivery("faults-pg-b", postgres.url, redis.url);
      let outage = { stopped: 0, started: 0 };
      const report = await runWithFault(
        loadOptions(a.target, "stop-postgres"),
        (o, l) => splitDriver(a.target, b.target, o, l),
        async () => {
          await sleep(SCALE.durationSeconds * 300);
          await postgres.stop();
          outage = { stopped: Date.now(), started: 0 };
          await sleep(3_000);
          await postgres.start();
          outage.started = Date.now();
        },
      );
      expect(outage.started).toBeGreaterThan(outage.stopped);
      if (process.env.FAULT_PROGRESS === "1")
        for (const i of [a, b])
          console.error(`${i.process.name} output:\n${i.process.output().slice(-3000)}`);
      verdict("stop-postgres", report);
      for (const i of [a, b]) expect(i.process.output()).not.toContain("Unhandled 'error' event");
      // Recovered on its own: sends succeed again in the last seconds of the run.
      const measured = report.timeline.filter((p) => p.phase === "measure");
      expect(measured.slice(-3).some((p) => p.sentPerSecond > 0)).toBe(true);
      // Whatever failed, failed with an error a client can act on (retry later), not silently.
      for (const e of report.errors.byReason)
        expect(["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "CLIENT"]).toContain(e.code);
    },
  );
});
