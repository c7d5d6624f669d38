// The authorisation matrix of issue 8, table-driven against two delivery instances sharing one
// database and Redis: what a device credential may not do to another device, what an app token
// may not do for another app's accounts (every app token × every other app's account × every RPC
// that acts for an account, with the same-app call as the control), prekey draining, wrong and
// revoked credentials, a removed device losing access at once (also its open stream), and the
// moderation API (issue 9) refusing everyone but the operator's moderator credential.
// The matrix is printed as a table.
import { randomBytes, randomUUID } from "node:crypto";
import { codeName, isAppError } from "@switchboard/errors";
import { createClient } from "@switchboard/grpc";
import { EnvelopeType, ModerationService, ReportDecision } from "@switchboard/proto";
import { afterAll, describe, expect, onTestFinished, test } from "vitest";
import { addProvider } from "../src/providers/provider-admin.js";
import type { TOKENS } from "./harness.js";
import {
  appAuth,
  clientsFor,
  connectDevice,
  createBackend,
  deviceAuth,
  linkDevice,
  registerAccount,
  sleep,
  startInstance,
  type TestDevice,
} from "./harness.js";

type AppName = keyof typeof TOKENS;
const APPS: AppName[] = ["whatsapp", "messenger", "instagram"];
const PREKEY_LIMIT = 3;

/** "OK" or `CODE/REASON` of a call. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "OK";
  } catch (err) {
    if (isAppError(err)) return `${codeName(err.code)}/${err.reason}`;
    throw err;
  }
}

/** The first frame a Connect stream answers to a subscribe for `address`, as an outcome. */
async function subscribeOutcome(
  target: string,
  auth: string,
  address: { accountId: string; deviceId: number },
): Promise<string> {
  const stream = clientsFor(target, auth).messages.connect();
  await stream.send({ frame: { case: "subscribe", value: { device: address, window: 0 } } });
  try {
    for await (const f of stream.responses) {
      if (f.frame.case === "frameError") {
        const e = f.frame.value.error;
        return `${codeName(e?.code ?? 2)}/${e?.reason ?? ""}`;
      }
      if (f.frame.case === "queueEmpty" || f.frame.case === "delivery") return "OK";
    }
    return "ENDED";
  } catch (err) {
    if (isAppError(err)) return `${codeName(err.code)}/${err.reason}`;
    throw err;
  } finally {
    stream.cancel();
  }
}

const rows: string[][] = [];
/**
 * One matrix cell: `got` must start with `expected`; the expectation "authorised" means anything
 * but PERMISSION_DENIED / UNAUTHENTICATED (the call got past authorisation, whatever it did next).
 */
function row(actor: string, rpc: string, target: string, expected: string, got: string) {
  const pass =
    expected === "authorised" ? !/^(PERMISSION_DENIED|UNAUTHENTICATED)/.test(got) : got.startsWith(expected);
  rows.push([actor, rpc, target, expected, got, pass ? "✓" : "✗"]);
  expect(pass, `${actor} ${rpc} ${target}: expected ${expected}, got ${got}`).toBe(true);
}

afterAll(() => {
  if (rows.length === 0) return;
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length), 6));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join(" | ");
  console.log(
    [
      "",
      "authorisation matrix",
      line(["actor", "rpc", "target", "expected", "got", ""]),
      ...rows.map(line),
    ].join("\n"),
  );
});

describe("authorisation matrix", () => {
  test("a device cannot read, ack, displace, send as or manage another device or account", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend, { config: { RATE_PREKEYS_PER_MINUTE: PREKEY_LIMIT } });
    const alice = await registerAccount(a.target);
    const alice2 = await linkDevice(a.target, alice);
    const bob = await registerAccount(a.target);
    const mallory = clientsFor(a.target, bob.auth);
    const aliceAddr = { accountId: alice.accountId, deviceId: 1 };

    // Alice's device 1 holds its stream; Bob's attempts must neither read it nor displace it.
    const aliceStream = connectDevice(a.target, alice, { autoAck: false });
    await aliceStream.until(() => aliceStream.queueEmpty);
    const sent = await clientsFor(a.target, alice2.auth).messages.sendMessage({
      destinationAccountId: alice.accountId,
      messages: [
        {
          deviceId: 1,
          registrationId: alice.registrationId,
          type: EnvelopeType.CIPHERTEXT,
          content: Buffer.from("x"),
        },
      ],
      clientMessageId: randomUUID(),
    });
    const messageId = sent.result.case === "sent" ? sent.result.value.messageId : "";
    await aliceStream.until(() => aliceStream.received.length === 1);

    const device = "device bob.1";
    const target = "alice.1";
    row(
      device,
      "ReceiveMessages",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await outcome(async () => {
        for await (const _ of mallory.messages.receiveMessages({ device: aliceAddr, window: 0 })) break;
      }),
    );
    row(
      device,
      "AckMessages",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await outcome(() => mallory.messages.ackMessages({ device: aliceAddr, messageIds: [messageId] })),
    );
    row(
      device,
      "Connect subscribe",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await subscribeOutcome(a.target, bob.auth, aliceAddr),
    );
    row(
      device,
      "SendMessage as",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await outcome(() =>
        mallory.messages.sendMessage({
          sender: aliceAddr,
          destinationAccountId: bob.accountId,
          messages: [
            {
              deviceId: 1,
              registrationId: bob.registrationId,
              type: EnvelopeType.CIPHERTEXT,
              content: Buffer.from("forged"),
            },
          ],
          clientMessageId: randomUUID(),
        }),
      ),
    );
    row(
      device,
      "UploadKeys for",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await outcome(() => mallory.keys.uploadKeys({ device: aliceAddr, identityKey: randomBytes(33) })),
    );
    row(
      device,
      "GetPreKeyCount of",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await outcome(() => mallory.keys.getPreKeyCount({ device: aliceAddr })),
    );
    row(
      device,
      "RegisterDevice on",
      "alice",
      "PERMISSION_DENIED/NOT_YOUR_ACCOUNT",
      await outcome(() =>
        mallory.directory.registerDevice({
          accountId: alice.accountId,
          registrationId: 5,
          password: randomBytes(18).toString("base64url"),
        }),
      ),
    );
    row(
      device,
      "RemoveDevice",
      "alice.2",
      "PERMISSION_DENIED/NOT_YOUR_ACCOUNT",
      await outcome(() =>
        mallory.directory.removeDevice({ accountId: alice.accountId, deviceId: alice2.deviceId }),
      ),
    );
    row(
      device,
      "CreateGroup as",
      target,
      "PERMISSION_DENIED/NOT_YOUR_DEVICE",
      await outcome(() =>
        mallory.groups.createGroup({ requester: aliceAddr, memberAccountIds: [bob.accountId] }),
      ),
    );

    // Nothing of Alice's changed: her message is still unacknowledged and her stream still open.
    expect(aliceStream.displaced).toBe(false);
    expect(aliceStream.error).toBeUndefined();
    const rowsLeft = await backend.db
      .selectFrom("queued_messages")
      .select(({ fn }) => fn.countAll<string>().as("n"))
      .where("account_id", "=", alice.accountId)
      .executeTakeFirstOrThrow();
    expect(Number(rowsLeft.n)).toBe(1);

    // Prekey draining: bundles beyond the per-account rate limit are refused.
    const drains: string[] = [];
    for (let i = 0; i < PREKEY_LIMIT + 2; i++)
      drains.push(
        await outcome(() => mallory.keys.getPreKeyBundles({ accountId: alice.accountId, deviceId: 0 })),
      );
    row(device, `GetPreKeyBundles ×${PREKEY_LIMIT + 2}`, "alice", "RESOURCE_EXHAUSTED/", drains.at(-1) ?? "");
    expect(drains.filter((d) => d.startsWith("RESOURCE_EXHAUSTED")).length).toBeGreaterThanOrEqual(1);
  });

  test("an app token acts only for its own app's accounts, on every RPC", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const accounts = {} as Record<AppName, TestDevice>;
    for (const app of APPS) accounts[app] = await registerAccount(inst.target, app);

    for (const tokenApp of APPS) {
      const c = clientsFor(inst.target, appAuth(tokenApp));
      for (const accountApp of APPS) {
        const x = accounts[accountApp];
        const addr = { accountId: x.accountId, deviceId: 1 };
        const other = accounts[tokenApp];
        const expected = tokenApp === accountApp ? "authorised" : "PERMISSION_DENIED/APP_MISMATCH";
        const actor = `${tokenApp} token`;
        const where = `${accountApp} account`;
        const calls: [string, () => Promise<unknown>][] = [
          [
            "SendMessage",
            () =>
              c.messages.sendMessage({
                sender: addr,
                destinationAccountId: other.accountId,
                messages: [
                  {
                    deviceId: 1,
                    registrationId: other.registrationId,
                    type: EnvelopeType.CIPHERTEXT,
                    content: Buffer.from("m"),
                  },
                ],
                clientMessageId: randomUUID(),
              }),
          ],
          ["AckMessages", () => c.messages.ackMessages({ device: addr, messageIds: [randomUUID()] })],
          [
            "ReceiveMessages",
            async () => {
              const call = c.messages.receiveMessages({ device: addr, window: 0 });
              for await (const _ of call) break;
            },
          ],
          ["UploadKeys", () => c.keys.uploadKeys({ device: addr })],
          ["GetPreKeyCount", () => c.keys.getPreKeyCount({ device: addr })],
          [
            "RegisterDevice",
            () =>
              c.directory.registerDevice({
                accountId: x.accountId,
                registrationId: 9,
                password: randomBytes(18).toString("base64url"),
              }),
          ],
          ["CreateGroup", () => c.groups.createGroup({ requester: addr, memberAccountIds: [] })],
        ];
        for (const [rpc, call] of calls) row(actor, rpc, where, expected, await outcome(call));
        row(
          actor,
          "Connect subscribe",
          where,
          expected,
          await subscribeOutcome(inst.target, appAuth(tokenApp), addr),
        );
        // RemoveDevice of a device that does not exist: same-app gets past authorisation (NOT_FOUND).
        row(
          actor,
          "RemoveDevice",
          where,
          expected,
          await outcome(() => c.directory.removeDevice({ accountId: x.accountId, deviceId: 5 })),
        );
      }
    }
  });

  test("only the moderator credential reaches the moderation API", async () => {
    const backend = await createBackend();
    const moderatorToken = "moderator-token-0123456789abcdef";
    const inst = await startInstance(backend, { config: { MODERATOR_TOKEN: moderatorToken } });
    const alice = await registerAccount(inst.target);
    const { token: providerToken } = await addProvider(backend.db, { id: "acme", displayName: "Acme" });
    const actors: [string, string, string][] = [
      ["moderator token", `Bearer ${moderatorToken}`, "authorised"],
      ["device alice.1", alice.auth, "PERMISSION_DENIED/NOT_A_MODERATOR"],
      ...APPS.map((app): [string, string, string] => [
        `${app} token`,
        appAuth(app),
        "PERMISSION_DENIED/NOT_A_MODERATOR",
      ]),
      ["provider acme token", `Bearer ${providerToken}`, "PERMISSION_DENIED/NOT_A_MODERATOR"],
    ];
    for (const [actor, auth, expected] of actors) {
      const c = createClient(ModerationService, inst.target, { metadata: () => ({ authorization: auth }) });
      onTestFinished(() => c.close());
      const calls: [string, () => Promise<unknown>][] = [
        ["ListReports", () => c.listReports({})],
        ["GetReport", () => c.getReport({ reportId: randomUUID() })],
        [
          "ResolveReport",
          () =>
            c.resolveReport({ reportId: randomUUID(), decision: ReportDecision.DISMISSED, moderator: "m" }),
        ],
        ["GetReportSummary", () => c.getReportSummary({ senderAccountId: alice.accountId })],
      ];
      for (const [rpc, call] of calls) row(actor, rpc, "reports", expected, await outcome(call));
    }
  });

  test("wrong, unknown and revoked credentials are refused at once, on every instance", async () => {
    const backend = await createBackend();
    const a = await startInstance(backend);
    const b = await startInstance(backend);
    const alice = await registerAccount(a.target);
    const alice2 = await linkDevice(a.target, alice);

    row(
      "wrong password",
      "GetPreKeyCount",
      "alice.1@A",
      "UNAUTHENTICATED/INVALID_CREDENTIALS",
      await outcome(() =>
        clientsFor(a.target, deviceAuth(alice.accountId, 1, `${alice.password}x`)).keys.getPreKeyCount({}),
      ),
    );
    row(
      "wrong password",
      "GetPreKeyCount",
      "alice.1@B",
      "UNAUTHENTICATED/INVALID_CREDENTIALS",
      await outcome(() =>
        clientsFor(b.target, deviceAuth(alice.accountId, 1, `${alice.password}x`)).keys.getPreKeyCount({}),
      ),
    );
    row(
      "unknown app token",
      "GetAccount",
      "-",
      "UNAUTHENTICATED/INVALID_CREDENTIALS",
      await outcome(() =>
        clientsFor(a.target, `Bearer ${"z".repeat(24)}`).directory.getAccount({ accountId: alice.accountId }),
      ),
    );
    row(
      "no credentials",
      "GetAccount",
      "-",
      "UNAUTHENTICATED/MISSING_CREDENTIALS",
      await outcome(() => clientsFor(a.target, "").directory.getAccount({ accountId: alice.accountId })),
    );

    // alice.2 is authenticated (and cached) on both instances and holds an open stream on B.
    const on = (t: string) => clientsFor(t, alice2.auth).keys.getPreKeyCount({});
    expect(await outcome(() => on(a.target))).toBe("OK");
    expect(await outcome(() => on(b.target))).toBe("OK");
    const stream = connectDevice(b.target, alice2);
    await stream.until(() => stream.queueEmpty);

    // The primary removes it through A.
    await clientsFor(a.target, alice.auth).directory.removeDevice({
      accountId: alice.accountId,
      deviceId: alice2.deviceId,
    });
    row(
      "removed device",
      "GetPreKeyCount",
      "alice.2@A",
      "UNAUTHENTICATED/INVALID_CREDENTIALS",
      await outcome(() => on(a.target)),
    );
    // B learns of the removal through the fan-out: the open stream's subscription ends at once
    // (a `displaced` frame, no further deliveries) and its next frame ends the stream.
    await stream.until(() => stream.displaced, 20_000);
    row("removed device", "open Connect stream", "alice.2@B", "DISPLACED", "DISPLACED");
    await stream.stream
      .send({
        frame: {
          case: "ack",
          value: {
            device: { accountId: alice.accountId, deviceId: alice2.deviceId },
            messageIds: [randomUUID()],
          },
        },
      })
      .catch(() => undefined);
    await Promise.race([stream.done, sleep(20_000)]);
    const ended = stream.error;
    row(
      "removed device",
      "next frame on that stream",
      "alice.2@B",
      "UNAUTHENTICATED/DEVICE_REMOVED",
      isAppError(ended) ? `${codeName(ended.code)}/${ended.reason}` : "STILL OPEN",
    );
    row(
      "removed device",
      "GetPreKeyCount",
      "alice.2@B",
      "UNAUTHENTICATED/INVALID_CREDENTIALS",
      await outcome(() => on(b.target)),
    );
  });
});
