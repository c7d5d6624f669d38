// The moderator API of issue 9 (ModerationService and `pnpm reports`) over genuine, franked
// reports recorded through ReportService (docs/safety.md, "Moderation", cites these tests).
import { execFile } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConfigError } from "@switchboard/config";
import { Code, isAppError } from "@switchboard/errors";
import { createClient } from "@switchboard/grpc";
import {
  App,
  content,
  DirectoryService,
  EnvelopeType,
  ModerationService,
  ReportDecision,
  ReportService,
  ReportStatus,
  type Envelope,
} from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { loadConfig } from "../src/config.js";
import { addProvider } from "../src/providers/provider-admin.js";
import {
  appAuth,
  clientsFor,
  connectDevice,
  createBackend,
  registerAccount,
  startInstance,
  TOKENS,
  type TestDevice,
} from "./harness.js";

const MODERATOR_TOKEN = "moderator-token-0123456789abcdef";
const MODERATOR = `Bearer ${MODERATOR_TOKEN}`;

const hmac = (key: Uint8Array, data: Uint8Array) =>
  new Uint8Array(createHmac("sha256", key).update(data).digest());

function moderation(target: string, auth: string) {
  const c = createClient(ModerationService, target, { metadata: () => ({ authorization: auth }) });
  onTestFinished(() => c.close());
  return c;
}

async function expectRejected(p: Promise<unknown>, code: Code, reason: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isAppError(err), `expected ${reason}, got ${String(err)}`).toBe(true);
  if (isAppError(err)) expect({ code: err.code, reason: err.reason }).toEqual({ code, reason });
}

/** A DataMessage as a client serializes it for the commitment (franking_key cleared). */
const dataMessage = (text: string) =>
  toBinary(content.DataMessageSchema, create(content.DataMessageSchema, { text, timestampMs: 1n }));

/**
 * `from` sends `text` franked to `to`, `to` receives it and reports it with `reason`: a genuine
 * report, recorded only because the franking proof verifies.
 */
async function reportGenuine(target: string, from: TestDevice, to: TestDevice, text: string, reason: string) {
  const plaintext = dataMessage(text);
  const frankingKey = randomBytes(32);
  const sent = await clientsFor(target, from.auth).messages.sendMessage({
    destinationAccountId: to.accountId,
    messages: [
      {
        deviceId: to.deviceId,
        registrationId: to.registrationId,
        type: EnvelopeType.CIPHERTEXT,
        content: randomBytes(48),
      },
    ],
    clientMessageId: randomUUID(),
    clientTimestampMs: BigInt(Date.now()),
    reportTag: hmac(frankingKey, plaintext),
  });
  expect(sent.result.case).toBe("sent");
  const stream = connectDevice(target, to);
  await stream.until(() => stream.received.length >= 1);
  stream.stream.cancel();
  const env = stream.received[0] as Envelope;
  const reports = createClient(ReportService, target, { metadata: () => ({ authorization: to.auth }) });
  onTestFinished(() => reports.close());
  const r = await reports.reportMessage({
    messageId: env.id,
    sender: env.source,
    serverTimestampMs: env.serverTimestampMs,
    plaintext,
    frankingKey,
    reportTag: env.reportTag,
    serverFrankingTag: env.serverFrankingTag,
    reason,
  });
  return { reportId: r.reportId, messageId: env.id, plaintext, serverTimestampMs: env.serverTimestampMs };
}

/** A backend with one instance that has MODERATOR_TOKEN, alice reported by bob, carol and dave, and mallory by bob. */
async function seeded() {
  const backend = await createBackend();
  const inst = await startInstance(backend, { config: { MODERATOR_TOKEN } });
  const [alice, bob, carol, dave, mallory] = [
    await registerAccount(inst.target),
    await registerAccount(inst.target, "messenger"),
    await registerAccount(inst.target),
    await registerAccount(inst.target, "instagram"),
    await registerAccount(inst.target),
  ] as [TestDevice, TestDevice, TestDevice, TestDevice, TestDevice];
  const before = Date.now();
  const r1 = await reportGenuine(inst.target, alice, bob, "buy my crypto", "spam");
  const r2 = await reportGenuine(inst.target, alice, carol, "buy my crypto!!", "spam");
  const r3 = await reportGenuine(inst.target, alice, dave, "you will regret it", "harassment");
  const r4 = await reportGenuine(inst.target, mallory, bob, "click this link", "phishing");
  return { backend, inst, alice, bob, carol, dave, mallory, before, reports: [r1, r2, r3, r4] };
}

describe("ModerationService", () => {
  test("lists genuine reports newest first with plaintext, reporter, sender, reason and time; filters and pages", async () => {
    const { inst, alice, bob, mallory, before, reports } = await seeded();
    const mod = moderation(inst.target, MODERATOR);

    const all = await mod.listReports({});
    expect(all.reports.map((r) => r.id)).toEqual(reports.map((r) => r.reportId).reverse());
    expect(all.nextPageToken).toBe("");
    const newest = all.reports[0];
    const r4 = reports[3];
    expect(newest).toMatchObject({
      id: r4?.reportId,
      app: App.MESSENGER,
      reporter: { accountId: bob.accountId, deviceId: 1 },
      sender: { accountId: mallory.accountId, deviceId: 1 },
      messageId: r4?.messageId,
      sealedSender: false,
      serverTimestampMs: r4?.serverTimestampMs,
      reason: "phishing",
      status: ReportStatus.OPEN,
    });
    expect(newest?.resolution).toBeUndefined();
    expect(Buffer.from(newest?.plaintext ?? []).equals(Buffer.from(r4?.plaintext ?? []))).toBe(true);
    expect(fromBinary(content.DataMessageSchema, newest?.plaintext ?? new Uint8Array()).text).toBe(
      "click this link",
    );
    const at = Number(newest?.reportedAtMs);
    expect(at).toBeGreaterThanOrEqual(before - 1000);
    expect(at).toBeLessThanOrEqual(Date.now() + 1000);

    // Filter by the reported account.
    const againstAlice = await mod.listReports({ senderAccountId: alice.accountId });
    expect(againstAlice.reports.map((r) => r.id)).toEqual(
      reports
        .slice(0, 3)
        .map((r) => r.reportId)
        .reverse(),
    );

    // Paging: pages of three, then one (the last page has no next token); together every
    // report once, in order.
    const p1 = await mod.listReports({ pageSize: 3 });
    expect(p1.reports).toHaveLength(3);
    expect(p1.nextPageToken).not.toBe("");
    const p2 = await mod.listReports({ pageSize: 3, pageToken: p1.nextPageToken });
    expect(p2.reports).toHaveLength(1);
    expect(p2.nextPageToken).toBe("");
    expect([...p1.reports, ...p2.reports].map((r) => r.id)).toEqual(all.reports.map((r) => r.id));
    // A page that ends exactly at the last report has no next token either.
    const exact = await mod.listReports({
      pageSize: 2,
      pageToken: (await mod.listReports({ pageSize: 2 })).nextPageToken,
    });
    expect(exact.reports.map((r) => r.id)).toEqual(all.reports.slice(2).map((r) => r.id));
    expect(exact.nextPageToken).toBe("");
    // With a filter: pages of one against alice.
    const a1 = await mod.listReports({ senderAccountId: alice.accountId, pageSize: 1 });
    const a2 = await mod.listReports({
      senderAccountId: alice.accountId,
      pageSize: 1,
      pageToken: a1.nextPageToken,
    });
    expect([...a1.reports, ...a2.reports].map((r) => r.id)).toEqual(
      againstAlice.reports.slice(0, 2).map((r) => r.id),
    );

    // Status filters: everything is open until resolved.
    expect((await mod.listReports({ status: ReportStatus.OPEN })).reports).toHaveLength(4);
    expect((await mod.listReports({ status: ReportStatus.RESOLVED })).reports).toHaveLength(0);
  });

  test("resolves a report once: records who, when and why; repeats are idempotent; counts reporters per account", async () => {
    const { inst, alice, mallory, reports } = await seeded();
    const mod = moderation(inst.target, MODERATOR);
    const id = reports[0]?.reportId ?? "";

    const first = await mod.resolveReport({
      reportId: id,
      decision: ReportDecision.ACTIONED,
      note: "crypto scam; account suspended",
      moderator: "ops-ada",
    });
    expect(first.alreadyResolved).toBe(false);
    expect(first.report?.status).toBe(ReportStatus.RESOLVED);
    expect(first.report?.resolution).toMatchObject({
      decision: ReportDecision.ACTIONED,
      note: "crypto scam; account suspended",
      moderator: "ops-ada",
    });
    const resolvedAt = first.report?.resolution?.resolvedAtMs ?? 0n;
    expect(Number(resolvedAt)).toBeGreaterThan(Date.now() - 60_000);

    // The same decision again (a retry, or a second moderator agreeing): the first resolution stands.
    const again = await mod.resolveReport({
      reportId: id,
      decision: ReportDecision.ACTIONED,
      note: "retry",
      moderator: "ops-bob",
    });
    expect(again.alreadyResolved).toBe(true);
    expect(again.report?.resolution).toEqual(first.report?.resolution);
    // A contradicting decision is refused.
    await expectRejected(
      mod.resolveReport({ reportId: id, decision: ReportDecision.DISMISSED, moderator: "ops-bob" }),
      Code.FailedPrecondition,
      "REPORT_ALREADY_RESOLVED",
    );

    const got = await mod.getReport({ reportId: id });
    expect(got.report?.resolution).toEqual(first.report?.resolution);
    expect((await mod.listReports({ status: ReportStatus.RESOLVED })).reports.map((r) => r.id)).toEqual([id]);
    expect((await mod.listReports({ status: ReportStatus.OPEN })).reports.map((r) => r.id)).not.toContain(id);

    await mod.resolveReport({
      reportId: reports[3]?.reportId ?? "",
      decision: ReportDecision.DISMISSED,
      moderator: "ops-ada",
    });
    const summary = await mod.getReportSummary({ senderAccountId: alice.accountId });
    expect(summary).toMatchObject({
      senderAccountId: alice.accountId,
      reports: 3,
      openReports: 2,
      actionedReports: 1,
      distinctReporters: 3,
    });
    expect(summary.firstReportedAtMs).toBeGreaterThan(0n);
    expect(summary.lastReportedAtMs).toBeGreaterThanOrEqual(summary.firstReportedAtMs);
    expect(await mod.getReportSummary({ senderAccountId: mallory.accountId })).toMatchObject({
      reports: 1,
      openReports: 0,
      actionedReports: 0,
      distinctReporters: 1,
    });
    expect(await mod.getReportSummary({ senderAccountId: randomUUID() })).toMatchObject({
      reports: 0,
      distinctReporters: 0,
      firstReportedAtMs: 0n,
    });
  });

  test("refuses devices, gateways and third-party providers; the moderator token opens nothing else", async () => {
    const { backend, inst, alice, bob, reports } = await seeded();
    const { token: providerToken } = await addProvider(backend.db, { id: "acme", displayName: "Acme Chat" });
    const id = reports[0]?.reportId ?? "";
    const callers: [string, string, Code, string][] = [
      ["device (the reporter)", bob.auth, Code.PermissionDenied, "NOT_A_MODERATOR"],
      ["device (the sender)", alice.auth, Code.PermissionDenied, "NOT_A_MODERATOR"],
      ["gateway app token", appAuth("whatsapp"), Code.PermissionDenied, "NOT_A_MODERATOR"],
      ["third-party provider", `Bearer ${providerToken}`, Code.PermissionDenied, "NOT_A_MODERATOR"],
      ["wrong token", `Bearer ${MODERATOR_TOKEN}x`, Code.Unauthenticated, "INVALID_CREDENTIALS"],
      ["no credentials", "", Code.Unauthenticated, "MISSING_CREDENTIALS"],
    ];
    for (const [, auth, code, reason] of callers) {
      const c = moderation(inst.target, auth);
      await expectRejected(c.listReports({}), code, reason);
      await expectRejected(c.getReport({ reportId: id }), code, reason);
      await expectRejected(
        c.resolveReport({ reportId: id, decision: ReportDecision.DISMISSED, moderator: "x" }),
        code,
        reason,
      );
      await expectRejected(c.getReportSummary({ senderAccountId: alice.accountId }), code, reason);
    }
    // Nothing was resolved by the refused calls.
    const report = await moderation(inst.target, MODERATOR).getReport({ reportId: id });
    expect(report.report?.status).toBe(ReportStatus.OPEN);

    // The moderator credential is not an app credential.
    const dir = createClient(DirectoryService, inst.target, {
      metadata: () => ({ authorization: MODERATOR }),
    });
    onTestFinished(() => dir.close());
    await expectRejected(
      dir.getAccount({ accountId: alice.accountId }),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );

    // Without MODERATOR_TOKEN nobody is a moderator.
    const plain = await startInstance(backend);
    await expectRejected(
      moderation(plain.target, MODERATOR).listReports({}),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    await expectRejected(
      moderation(plain.target, bob.auth).listReports({}),
      Code.PermissionDenied,
      "NOT_A_MODERATOR",
    );
  });

  test("bad input fails with a reason: page size, page token, ids, decision, moderator, note", async () => {
    const { inst, alice, reports } = await seeded();
    const mod = moderation(inst.target, MODERATOR);
    const id = reports[0]?.reportId ?? "";

    await expectRejected(mod.listReports({ pageSize: 201 }), Code.InvalidArgument, "PAGE_SIZE_TOO_LARGE");
    await expectRejected(
      mod.listReports({ pageToken: "not a token!" }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await expectRejected(
      mod.listReports({
        pageToken: Buffer.from('{"at":"yesterday","id":"x","q":"0:"}').toString("base64url"),
      }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    const first = await mod.listReports({ pageSize: 1 });
    await expectRejected(
      mod.listReports({ pageSize: 1, pageToken: first.nextPageToken, senderAccountId: alice.accountId }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await expectRejected(mod.listReports({ senderAccountId: "alice" }), Code.InvalidArgument, "INVALID_ID");
    await expectRejected(
      mod.listReports({ status: 7 as ReportStatus }),
      Code.InvalidArgument,
      "INVALID_STATUS",
    );

    await expectRejected(mod.getReport({ reportId: randomUUID() }), Code.NotFound, "REPORT_NOT_FOUND");
    await expectRejected(mod.getReport({ reportId: "42" }), Code.InvalidArgument, "INVALID_ID");
    await expectRejected(
      mod.resolveReport({ reportId: randomUUID(), decision: ReportDecision.DISMISSED, moderator: "ops" }),
      Code.NotFound,
      "REPORT_NOT_FOUND",
    );
    await expectRejected(
      mod.resolveReport({ reportId: id, moderator: "ops" }),
      Code.InvalidArgument,
      "INVALID_DECISION",
    );
    await expectRejected(
      mod.resolveReport({ reportId: id, decision: ReportDecision.DISMISSED, moderator: " " }),
      Code.InvalidArgument,
      "INVALID_MODERATOR",
    );
    await expectRejected(
      mod.resolveReport({
        reportId: id,
        decision: ReportDecision.DISMISSED,
        moderator: "ops",
        note: "n".repeat(1025),
      }),
      Code.InvalidArgument,
      "FIELD_TOO_LONG",
    );
    await expectRejected(mod.getReportSummary({ senderAccountId: "" }), Code.InvalidArgument, "INVALID_ID");
    expect((await mod.getReport({ reportId: id })).report?.status).toBe(ReportStatus.OPEN);
  });
});

describe("MODERATOR_TOKEN", () => {
  const base = {
    APP_TOKENS: `whatsapp=${TOKENS.whatsapp}`,
  };
  test("is optional, at least 16 characters, and differs from every app token", () => {
    expect(loadConfig(base).MODERATOR_TOKEN).toBeUndefined();
    expect(loadConfig({ ...base, MODERATOR_TOKEN }).MODERATOR_TOKEN).toBe(MODERATOR_TOKEN);
    expect(() => loadConfig({ ...base, MODERATOR_TOKEN: "short" })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, MODERATOR_TOKEN: "short" })).not.toThrow(/short/);
    expect(() => loadConfig({ ...base, MODERATOR_TOKEN: TOKENS.whatsapp })).toThrow(/must differ/);
  });
});

describe("reports CLI", () => {
  test("lists, shows and resolves reports in the database", async () => {
    const { backend, alice, reports } = await seeded();
    const run = async (...args: string[]) => {
      const r = await promisify(execFile)(
        process.execPath,
        [
          "--conditions=switchboard-source",
          "--import",
          "tsx",
          join(import.meta.dirname, "../src/reports-cli.ts"),
          ...args,
        ],
        { env: { ...process.env, DATABASE_URL: backend.databaseUrl }, cwd: join(import.meta.dirname, "..") },
      ).catch((err: { stdout: string; stderr: string; code: number }) => err);
      return { stdout: r.stdout, stderr: r.stderr, code: "code" in r ? r.code : 0 };
    };
    const id = reports[0]?.reportId ?? "";

    const list = await run("list", "--status", "open", "--sender", alice.accountId, "--limit", "2");
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split("\n")).toHaveLength(3); // two reports and the "more" line
    expect(list.stdout).toContain(reports[2]?.reportId);
    expect(list.stdout).toMatch(/more: --page \S+/);

    const show = await run("show", id);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('text: "buy my crypto"');
    expect(show.stdout).toContain(`sender     ${alice.accountId}.1`);
    expect(show.stdout).toContain('reason     "spam"');

    const resolved = await run("resolve", id, "--decision", "dismissed", "--note", "joke", "--by", "ops-cli");
    expect(resolved.code).toBe(0);
    expect(resolved.stdout).toContain(`report ${id} resolved dismissed by ops-cli`);
    const again = await run("resolve", id, "--decision", "dismissed", "--by", "ops-cli");
    expect(again.stdout).toContain("already resolved dismissed by ops-cli");
    const conflict = await run("resolve", id, "--decision", "actioned");
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain("REPORT_ALREADY_RESOLVED");

    const summary = await run("summary", alice.accountId);
    expect(summary.stdout).toContain("3 reports (2 open, 0 actioned) from 3 distinct reporters");
    const missing = await run("show", randomUUID());
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("REPORT_NOT_FOUND");
    const usage = await run("resolve", id, "--decision", "maybe");
    expect(usage.code).toBe(64);
  });
});
