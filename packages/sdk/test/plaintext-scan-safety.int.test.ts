// The plaintext scan again, with message franking and sealed sender in use: the server still
// holds none of the conversation's plaintext — except what a recipient chose to reveal in a
// report, which is found exactly once, in the `reports` table — and no sealed-sender row or
// fan-out payload names the sender.
import { randomBytes } from "node:crypto";
import { EnvelopeType } from "@switchboard/proto";
import { redisUrl } from "@switchboard/testkit";
import { sql } from "kysely";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { deriveAccessKey, generateProfileKey } from "../src/index.js";
import { PlaintextScanner } from "./plaintext-scanner.js";
import { readKey, RespConnection, scanKeys } from "./redis-probe.js";
import { linkDevice, registerUser, startDelivery, until } from "./harness.js";

const marker = () => randomBytes(18).toString("base64url");

describe("plaintext on the server, with franking and sealed sender", () => {
  it("finds no plaintext except a reported message, and no sender identity in sealed rows", async () => {
    const logLines: string[] = [];
    const { target, db, redisPrefix } = await startDelivery({
      log: pino({ level: "trace" }, { write: (line: string) => void logLines.push(line) }),
    });
    const published: { channel: string; payload: Buffer }[] = [];
    const subscriber = await RespConnection.open(redisUrl());
    subscriber.onPush = ([, , channel, payload]) => {
      if (Buffer.isBuffer(channel) && Buffer.isBuffer(payload))
        published.push({ channel: channel.toString(), payload });
    };
    await subscriber.psubscribe(`${redisPrefix}*`);

    const secret = { sealed: marker(), sealedAgain: marker(), sealedGroup: marker(), franked: marker() };
    const reported = marker();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    // Bob's laptop stays offline: its queue keeps the sealed rows for the scan.
    await linkDevice(target, bob);
    const profileKey = generateProfileKey();
    await bob.client.setSealedSenderAccess({ accessKey: deriveAccessKey(profileKey) });
    alice.client.start();
    bob.client.start();
    const sealedSender = { accessKey: deriveAccessKey(profileKey) };

    await alice.client.sendMessage(bob.accountId, {
      text: `the eagle lands at dawn ${secret.sealed}`,
      sealedSender,
    });
    await alice.client.sendMessage(bob.accountId, { text: `spam spam spam ${reported}`, sealedSender });
    await alice.client.sendMessage(bob.accountId, {
      text: `second sealed ${secret.sealedAgain}`,
      sealedSender,
    });
    // A sealed group message: sender keys and the message go out as multi-recipient sealed sends.
    const group = await alice.client.createGroup([bob.accountId]);
    await alice.client.sendGroupMessage(group.id, {
      text: `sealed group ${secret.sealedGroup}`,
      sealedSender: { accessKeys: { [bob.accountId]: sealedSender.accessKey } },
    });
    const received = await until(bob, "message", 4);
    expect(received.find((m) => m.message.text.includes(secret.sealedGroup))?.meta.groupId).toBe(group.id);
    expect(received.every((m) => m.meta.sealedSender && m.meta.sender.accountId === alice.accountId)).toBe(
      true,
    );
    await bob.client.sendMessage(alice.accountId, { text: `franked reply ${secret.franked}` });
    const [reply] = await until(alice, "message");
    expect(reply?.meta.serverFrankingTag.byteLength).toBe(32);
    const toReport = received.find((m) => m.message.text.includes(reported));
    if (!toReport) throw new Error("no message to report");
    await bob.client.report(toReport, "spam");

    const scanner = new PlaintextScanner([...Object.values(secret), reported]);
    const senderScanner = new PlaintextScanner([alice.accountId]);
    const tables = await sql<{ table_schema: string; table_name: string }>`
      SELECT table_schema, table_name FROM information_schema.tables
      WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
    `.execute(db);
    let sealedRows = 0;
    for (const { table_schema: schema, table_name: name } of tables.rows) {
      const rows = await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(schema, name)}`.execute(db);
      rows.rows.forEach((row, i) => {
        scanner.scan(`${schema}.${name}[${i}]`, row);
        if (name === "queued_messages" && Number(row.type) === (EnvelopeType.SEALED_SENDER as number)) {
          sealedRows++;
          senderScanner.scan(`${schema}.${name}[${i}]`, row);
        }
      });
    }
    const redis = await RespConnection.open(redisUrl());
    for (const key of await scanKeys(redis, "*"))
      scanner.scan(`redis key ${key.toString()}`, { name: key, ...(await readKey(redis, key)) });
    for (const { channel, payload } of published) scanner.scan(`pubsub ${channel}`, payload);
    logLines.forEach((line, i) => scanner.scan(`log[${i}]`, line));
    expect(logLines.length).toBeGreaterThan(0);
    expect(published.length).toBeGreaterThanOrEqual(4);

    expect(scanner.findingsOf(Object.values(secret))).toEqual([]);
    // What bob chose to reveal is on the server, in the report and nowhere else.
    expect(scanner.findingsOf([reported]).map((f) => f.where)).toEqual([
      expect.stringMatching(/^public\.reports\[0\]\.plaintext$/),
    ]);
    // The sealed rows queued for bob's offline laptop name nothing of alice.
    // 3 one-to-one, the sender key and the group message.
    expect(sealedRows).toBeGreaterThanOrEqual(5);
    expect(senderScanner.scanned.values).toBeGreaterThan(0);
    expect(senderScanner.findings).toEqual([]);
  });
});
