// `pnpm bench:targets --quick`: the whole suite's orchestration (a fresh database, the delivery
// service and the gateways as processes, load runs through the CLI's options, an idle-connection
// bench, the summary) on a small configuration, asserting correctness and clean-up only.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { createDatabase } from "@switchboard/storage";
import { sql } from "kysely";
import { afterAll, expect, inject, test } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

test("a quick run measures each selected target, verifies every run and leaves nothing behind", async () => {
  const out = await mkdtemp(join(tmpdir(), "bench-targets-"));
  dirs.push(out);
  const adminUrl = inject("postgresAdminUrl");
  const redisUrl = inject("redisUrl");
  const { code, output } = await new Promise<{ code: number | null; output: string }>((done) => {
    const child = spawn(
      process.execPath,
      [
        "--conditions=switchboard-source",
        "--import",
        "tsx",
        "bench/targets.ts",
        "--quick",
        "--only",
        "streaming,latency-half,messenger,idle-messenger",
        "--idle-connections",
        "200",
        "--out",
        out,
      ],
      { cwd: packageDir, env: { ...process.env, DATABASE_URL: adminUrl, REDIS_URL: redisUrl } },
    );
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.stderr.on("data", (d: Buffer) => (text += d.toString()));
    child.on("close", (c) => done({ code: c, output: text }));
  });
  expect(code, output.slice(-4000)).toBe(0);
  expect(output).toMatch(/^target\s+measured\s+goal\s+verdict$/m);

  const summary = JSON.parse(await readFile(join(out, "summary.json"), "utf8")) as {
    database: string;
    redisPrefix: string;
    verdicts: Array<{
      id: string;
      value: number | null;
      verified: boolean | null;
      met: boolean | null;
      report: string | null;
    }>;
  };
  expect(summary.verdicts.map((v) => v.id)).toEqual([
    "streaming",
    "latency-half",
    "messenger",
    "idle-messenger",
  ]);
  for (const v of summary.verdicts) {
    // A figure for every target (a few hundred idle connections move RSS by less than its noise,
    // so only the load runs' figures are sure to be positive).
    expect(Number.isFinite(v.value), v.id).toBe(true);
    if (!v.id.startsWith("idle-")) expect(v.value, v.id).toBeGreaterThan(0);
    // A quick run is not judged against the targets.
    expect(v.met, v.id).toBeNull();
  }
  const load = summary.verdicts.filter((v) => !v.id.startsWith("idle-"));
  for (const v of load) {
    expect(v.verified, v.id).toBe(true);
    const report = JSON.parse(await readFile(v.report as string, "utf8")) as {
      verification: { lost: number; duplicates: number; reordered: number };
    };
    expect(report.verification).toMatchObject({ lost: 0, duplicates: 0, reordered: 0 });
  }
  // latency-half offered half of what the streaming run reached.
  const half = JSON.parse(
    await readFile(summary.verdicts.find((v) => v.id === "latency-half")?.report as string, "utf8"),
  ) as { traffic: { offeredPerSecond: number } };
  const streaming = summary.verdicts.find((v) => v.id === "streaming")?.value as number;
  expect(Math.abs(half.traffic.offeredPerSecond - streaming / 2)).toBeLessThanOrEqual(1);
  await expect(readFile(join(out, "summary.md"), "utf8")).resolves.toContain("| not judged |");

  // The run's database is dropped and its Redis keys deleted.
  const admin = createDatabase({ url: adminUrl, poolSize: 1 });
  try {
    const r = await sql`SELECT 1 FROM pg_database WHERE datname = ${summary.database}`.execute(admin);
    expect(r.rows).toHaveLength(0);
  } finally {
    await admin.destroy();
  }
  const redis = new Redis(redisUrl);
  try {
    const [, keys] = await redis.scan("0", "MATCH", `${summary.redisPrefix}*`, "COUNT", 100_000);
    expect(keys).toEqual([]);
  } finally {
    redis.disconnect();
  }
});
