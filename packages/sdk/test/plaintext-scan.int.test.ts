// End-to-end encryption, checked from the server's side: after a conversation through the real
// delivery service, no table row, Redis key, pub/sub payload or log line holds any of its
// plaintext. Positive controls prove each scan can find what it looks for.
import { randomBytes } from "node:crypto";
import { content } from "@switchboard/proto";
import { redisUrl } from "@switchboard/testkit";
import { sql } from "kysely";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { PlaintextScanner } from "./plaintext-scanner.js";
import { readKey, RespConnection, scanKeys } from "./redis-probe.js";
import { linkDevice, registerUser, startDelivery, texts, timeline, until } from "./harness.js";

/** 24 random characters: text no server could hold by chance. */
const marker = () => randomBytes(18).toString("base64url");

describe("plaintext on the server", () => {
  it("finds none of a conversation's plaintext in any table, Redis key, pub/sub payload or log line", async () => {
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

    const secret = {
      oneToOne: marker(),
      reply: marker(),
      reaction: marker(),
      group: marker(),
      groupReply: marker(),
    };
    // Device names are plaintext metadata by design: the scan must find this one, and the
    // planted Redis key below.
    const deviceName = marker();
    const planted = marker();

    const alice1 = await registerUser(target);
    // Alice's laptop stays offline, so its queue still holds its copy of everything at scan time.
    const alice2 = await linkDevice(target, alice1);
    const alice2Timeline = timeline(alice2);
    const bob = await registerUser(target, { deviceName: `bob's phone ${deviceName}` });
    const carol = await registerUser(target);
    for (const c of [alice1, bob, carol]) c.client.start();

    const first = await alice1.client.sendMessage(bob.accountId, {
      text: `meet me at the old harbour at noon ${secret.oneToOne}`,
    });
    await until(bob, "message");
    await bob.client.sendTyping({ accountId: alice1.accountId }, content.TypingAction.STARTED);
    await until(alice1, "typing");
    await bob.client.sendMessage(alice1.accountId, { text: `bring the blue umbrella ${secret.reply}` });
    const [reply] = await until(alice1, "message");
    await alice1.client.sendReceipt(bob.accountId, content.ReceiptType.READ, [
      reply?.message.timestampMs ?? 0n,
    ]);
    await until(bob, "receipt");
    await alice1.client.sendMessage(bob.accountId, {
      reaction: {
        emoji: secret.reaction,
        targetAuthorAccountId: bob.accountId,
        targetTimestampMs: reply?.message.timestampMs,
      },
    });
    await until(bob, "message", 2);

    const group = await alice1.client.createGroup([bob.accountId, carol.accountId]);
    await alice1.client.sendGroupMessage(group.id, { text: `the picnic moves to saturday ${secret.group}` });
    await until(carol, "message");
    await carol.client.sendTyping({ groupId: group.id }, content.TypingAction.STARTED);
    await until(bob, "typing");
    await carol.client.sendGroupMessage(group.id, {
      text: `i will bake the lemon cake ${secret.groupReply}`,
    });
    await until(alice1, "message", 2);
    await until(bob, "message", 4);
    expect(texts(bob)).toEqual([
      `meet me at the old harbour at noon ${secret.oneToOne}`,
      "",
      `the picnic moves to saturday ${secret.group}`,
      `i will bake the lemon cake ${secret.groupReply}`,
    ]);
    expect(bob.events.message[1]?.message.reaction?.emoji).toBe(secret.reaction);
    for (const c of [alice1, bob, carol])
      expect([c.events.decryptionFailed, c.events.error]).toEqual([[], []]);

    const clientMessageId = first.kind === "sent" ? first.clientMessageId : "";
    const scanner = new PlaintextScanner([
      ...Object.values(secret),
      deviceName,
      planted,
      clientMessageId,
      alice1.accountId,
    ]);
    const where = (marker: string) => scanner.findingsOf([marker]).map((f) => f.where);

    // (a) Every row of every table of the service's database.
    const tables = await sql<{ table_schema: string; table_name: string }>`
      SELECT table_schema, table_name FROM information_schema.tables
      WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
    `.execute(db);
    const rowCounts: Record<string, number> = {};
    for (const { table_schema: schema, table_name: name } of tables.rows) {
      const rows = await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(schema, name)}`.execute(db);
      rowCounts[name] = rows.rows.length;
      rows.rows.forEach((row, i) => scanner.scan(`${schema}.${name}[${i}]`, row));
    }
    expect(Object.keys(rowCounts)).toEqual(
      expect.arrayContaining(["accounts", "devices", "queued_messages", "group_payloads", "send_log"]),
    );
    // The ciphertexts were there to scan: Alice's laptop has not fetched its queue.
    expect(rowCounts.queued_messages).toBeGreaterThanOrEqual(5);
    expect(rowCounts.group_payloads).toBeGreaterThanOrEqual(2);

    // (b) Every Redis key, the service's (its prefix; there may be none: Redis carries only
    // wake-ups) and any other.
    const redis = await RespConnection.open(redisUrl());
    await redis.command("SET", `${redisPrefix}scan-control`, `planted ${planted}`);
    const keys = await scanKeys(redis, "*");
    const ownKeys = keys.filter((k) => k.toString().startsWith(redisPrefix));
    for (const key of keys) {
      scanner.scan(`redis key ${key.toString()}`, { name: key, ...(await readKey(redis, key)) });
    }
    expect(ownKeys.map(String)).toContain(`${redisPrefix}scan-control`);
    await redis.command("DEL", `${redisPrefix}scan-control`);

    // (c) Every payload published on the service's fan-out channels during the conversation.
    for (const { channel, payload } of published) scanner.scan(`pubsub ${channel}`, payload);
    expect(published.length).toBeGreaterThanOrEqual(10);

    // (d) Every log line, at trace level.
    logLines.forEach((line, i) => scanner.scan(`log[${i}]`, line));
    expect(logLines.length).toBeGreaterThan(0);

    expect(scanner.findingsOf(Object.values(secret))).toEqual([]);
    // The scans work: they find the plaintext metadata the service keeps or sends by design.
    expect(where(deviceName)).toEqual([expect.stringMatching(/^public\.devices\[\d+\]\.name$/)]);
    expect(where(planted)).toEqual([
      `redis key ${redisPrefix}scan-control.value`,
      `redis key ${redisPrefix}scan-control.dump`,
    ]);
    expect(where(clientMessageId).some((w) => w.startsWith("public.send_log"))).toBe(true);
    expect(where(clientMessageId).some((w) => w.startsWith("pubsub "))).toBe(true);
    expect(where(alice1.accountId).some((w) => w.startsWith("log["))).toBe(true);

    // The queue that was scanned is the conversation: Alice's laptop now reads it, in order.
    alice2.client.start();
    await until(alice2, "message", 2);
    await until(alice2, "sync", 3);
    expect(alice2Timeline).toEqual([
      `sync:meet me at the old harbour at noon ${secret.oneToOne}`,
      `message:bring the blue umbrella ${secret.reply}`,
      "sync:",
      `sync:the picnic moves to saturday ${secret.group}`,
      `message:i will bake the lemon cake ${secret.groupReply}`,
    ]);
  });
});
