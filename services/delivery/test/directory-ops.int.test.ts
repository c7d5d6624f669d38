import { randomBytes, randomUUID } from "node:crypto";
import { Code } from "@switchboard/errors";
import { App } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import {
  appAuth,
  clientsFor,
  connectDevice,
  createBackend,
  registerAccount,
  sendTo,
  sleep,
  startInstance,
} from "./harness.js";

describe("DirectoryService", () => {
  test("resolves handles of every app to the account and its devices", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const ig = clientsFor(inst.target, appAuth("instagram"));
    const r = await ig.directory.registerAccount({
      handle: { app: App.INSTAGRAM, value: "Ada.Lovelace" },
      registrationId: 11,
      password: randomBytes(18).toString("base64url"),
      deviceName: "phone",
    });
    expect(r.account?.handle?.value).toBe("ada.lovelace");
    const wa = await registerAccount(inst.target, "whatsapp");
    const asked = clientsFor(inst.target, wa.auth);
    const found = await asked.directory.resolveHandle({
      handle: { app: App.INSTAGRAM, value: "ADA.LOVELACE" },
    });
    expect(found.result.case).toBe("found");
    expect(found.result.case === "found" && found.result.value.account?.id).toBe(r.account?.id);
    expect(
      found.result.case === "found" && found.result.value.devices.map((d) => [d.deviceId, d.registrationId]),
    ).toEqual([[1, 11]]);
    const missing = await asked.directory.resolveHandle({
      handle: { app: App.WHATSAPP, value: "+15559999999" },
    });
    expect(missing.result.case).toBe("notFound");
    const bad = await asked.directory
      .resolveHandle({ handle: { app: App.WHATSAPP, value: "5551234" } })
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: Code.InvalidArgument, reason: "INVALID_HANDLE" });
  });

  test("refuses a duplicate handle and registration by a device credential", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const wa = clientsFor(inst.target, appAuth("whatsapp"));
    const req = {
      handle: { app: App.WHATSAPP, value: "+15551110000" },
      registrationId: 5,
      password: randomBytes(18).toString("base64url"),
    };
    const first = await wa.directory.registerAccount(req);
    const again = await wa.directory.registerAccount(req).catch((e: unknown) => e);
    expect(again).toMatchObject({ code: Code.AlreadyExists, reason: "HANDLE_TAKEN" });
    const device = clientsFor(
      inst.target,
      `Basic ${Buffer.from(`${first.account?.id}.1:${req.password}`).toString("base64")}`,
    );
    const denied = await device.directory
      .registerAccount({ ...req, handle: { app: App.WHATSAPP, value: "+15551110001" } })
      .catch((e: unknown) => e);
    expect(denied).toMatchObject({ code: Code.PermissionDenied, reason: "APP_CREDENTIAL_REQUIRED" });
    const wrong = clientsFor(
      inst.target,
      `Basic ${Buffer.from(`${first.account?.id}.1:not-the-password-at-all`).toString("base64")}`,
    );
    const unauth = await wrong.keys.getPreKeyCount({}).catch((e: unknown) => e);
    expect(unauth).toMatchObject({ code: Code.Unauthenticated, reason: "INVALID_CREDENTIALS" });
  });
});

describe("queue limits and flow control", () => {
  test("never delivers a message past its retention", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { config: { QUEUE_TTL_SECONDS: 1 } });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "soon stale");
    await sleep(1_200);
    const reader = connectDevice(inst.target, bob);
    await reader.until(() => reader.queueEmpty);
    expect(reader.received).toHaveLength(0);
  });

  test("keeps at most `window` unacknowledged messages in flight", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    for (let i = 0; i < 12; i++) await sendTo(c, [bob], `m${i}`);
    const reader = connectDevice(inst.target, bob, { autoAck: false, window: 5 });
    await reader.until(() => reader.received.length === 5);
    await sleep(300);
    expect(reader.received).toHaveLength(5);
    expect(reader.queueEmpty).toBe(false);
    await reader.ack(reader.received.slice(0, 3).map((e) => e.id));
    await reader.until(() => reader.received.length === 8);
    await sleep(300);
    expect(reader.received).toHaveLength(8);
  });
});

describe("operations", () => {
  test("serves Prometheus metrics and a database health check", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, { metrics: true });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    await sendTo(clientsFor(inst.target, alice.auth), [bob], "counted", randomUUID());
    const health = await fetch(`http://127.0.0.1:${inst.metricsPort}/healthz`);
    expect(health.status).toBe(200);
    const text = await (await fetch(`http://127.0.0.1:${inst.metricsPort}/metrics`)).text();
    for (const name of [
      "switchboard_sends_total",
      "switchboard_messages_queued_total",
      "switchboard_deliveries_total",
      "switchboard_acks_total",
      "switchboard_queue_depth",
      "switchboard_send_commit_seconds",
      "switchboard_commit_to_push_seconds",
      "switchboard_commit_to_ack_seconds",
    ]) {
      expect(text).toContain(`# TYPE ${name}`);
    }
    expect(text).toMatch(/switchboard_sends_total\{[^}]*kind="direct"[^}]*outcome="sent"[^}]*\} 1/);
  });

  test("finishes accepted sends during a graceful shutdown", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    const sends = Array.from({ length: 20 }, (_, i) =>
      sendTo(c, [bob], `m${i}`).then(
        (r) => r.result.case,
        (e: unknown) => e,
      ),
    );
    await sleep(5);
    await inst.close();
    const outcomes = await Promise.all(sends);
    // Every send either committed (and is stored) or failed with a retryable status; none is lost silently.
    const sent = outcomes.filter((o) => o === "sent").length;
    const failed = outcomes.filter((o) => o !== "sent");
    for (const f of failed) expect(f).toMatchObject({ code: expect.any(Number) as unknown });
    const { sql } = await import("kysely");
    const rows = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${bob.accountId}`.execute(
      backend.db,
    );
    expect(rows.rows[0]?.n).toBe(sent);
  });
});

describe("rate limits", () => {
  test("throttle a sender past its burst with RATE_LIMITED and a retry hint, and pre-key draining", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend, {
      config: { RATE_SEND_PER_SECOND: 1, RATE_PAIR_PER_SECOND: 100, RATE_PREKEYS_PER_MINUTE: 3 },
    });
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        sendTo(c, [bob], `m${i}`).then(
          () => "sent",
          (e: unknown) => e,
        ),
      ),
    );
    const elapsedSeconds = (Date.now() - started) / 1000;
    // Burst = five seconds' worth (5), plus at most one token per elapsed second; the rest are refused.
    const sent = outcomes.filter((o) => o === "sent").length;
    expect(sent).toBeGreaterThanOrEqual(5);
    expect(sent).toBeLessThanOrEqual(5 + Math.ceil(elapsedSeconds));
    const refused = outcomes.filter((o) => o !== "sent");
    expect(refused.length).toBe(30 - sent);
    expect(refused[0]).toMatchObject({ code: Code.ResourceExhausted, reason: "RATE_LIMITED" });
    expect((refused[0] as { retryAfterMs?: number }).retryAfterMs).toBeGreaterThan(0);
    // The limit is checked alongside the batch's reads: a refused send stores nothing.
    const { sql } = await import("kysely");
    const stored = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM queued_messages WHERE account_id = ${bob.accountId}`.execute(
      backend.db,
    );
    expect(stored.rows[0]?.n).toBe(sent);

    const drains = await Promise.all(
      Array.from({ length: 5 }, () =>
        c.keys.getPreKeyBundles({ accountId: bob.accountId }).then(
          () => "ok",
          (e: unknown) => e,
        ),
      ),
    );
    expect(drains.filter((d) => d === "ok")).toHaveLength(3);
    expect(drains.find((d) => d !== "ok")).toMatchObject({
      code: Code.ResourceExhausted,
      reason: "RATE_LIMITED",
    });
  });
});

describe("re-registration and identity changes", () => {
  test("re-registers a taken handle when asked: same account, new primary, linked devices and queue gone", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const wa = clientsFor(inst.target, appAuth("whatsapp"));
    const handle = { app: App.WHATSAPP, value: "+15552220000" };
    const first = await wa.directory.registerAccount({
      handle,
      registrationId: 5,
      password: randomBytes(18).toString("base64url"),
    });
    const accountId = first.account?.id ?? "";
    const linked = await wa.directory.registerDevice({
      accountId,
      registrationId: 6,
      password: randomBytes(18).toString("base64url"),
    });
    const alice = await registerAccount(inst.target);
    await sendTo(
      clientsFor(inst.target, alice.auth),
      [
        { accountId, deviceId: 1, registrationId: 5, password: "", auth: "" },
        { accountId, deviceId: linked.device?.deviceId ?? 0, registrationId: 6, password: "", auth: "" },
      ],
      "before reinstall",
    );
    const password = randomBytes(18).toString("base64url");
    const again = await wa.directory.registerAccount({
      handle,
      registrationId: 9,
      password,
      replaceExisting: true,
    });
    expect(again.replaced).toBe(true);
    expect(again.account?.id).toBe(accountId);
    const now = await wa.directory.getAccount({ accountId });
    expect(
      now.result.case === "found" && now.result.value.devices.map((d) => [d.deviceId, d.registrationId]),
    ).toEqual([[1, 9]]);
    // The sender's old view is now stale/mismatched, and the old queue is gone.
    const stale = await sendTo(
      clientsFor(inst.target, alice.auth),
      [{ accountId, deviceId: 1, registrationId: 5, password: "", auth: "" }],
      "x",
    );
    expect(stale.result.case).toBe("staleDevices");
    const reader = connectDevice(inst.target, {
      accountId,
      deviceId: 1,
      registrationId: 9,
      password,
      auth: `Basic ${Buffer.from(`${accountId}.1:${password}`).toString("base64")}`,
    });
    await reader.until(() => reader.queueEmpty);
    expect(reader.received).toHaveLength(0);
  });

  test("a new identity key needs new signed keys and retires the old one-time keys", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const bob = await registerAccount(inst.target);
    const c = clientsFor(inst.target, bob.auth);
    const ec = () => Buffer.concat([Buffer.from([5]), randomBytes(32)]);
    const signed = () => ({ keyId: 1, publicKey: ec(), signature: randomBytes(64) });
    const kyber = () => ({ keyId: 2, publicKey: randomBytes(1569), signature: randomBytes(64) });
    await c.keys.uploadKeys({
      identityKey: ec(),
      signedPreKey: signed(),
      lastResortKyberPreKey: kyber(),
      oneTimePreKeys: [{ keyId: 10, publicKey: ec() }],
      kyberPreKeys: [{ keyId: 11, publicKey: randomBytes(1569), signature: randomBytes(64) }],
    });
    const incomplete = await c.keys.uploadKeys({ identityKey: ec() }).catch((e: unknown) => e);
    expect(incomplete).toMatchObject({ code: Code.FailedPrecondition, reason: "KEYS_INCOMPLETE" });
    const r = await c.keys.uploadKeys({
      identityKey: ec(),
      signedPreKey: signed(),
      lastResortKyberPreKey: kyber(),
    });
    expect(r).toMatchObject({ oneTimePreKeyCount: 0, kyberPreKeyCount: 0 });
  });
});
