import { randomUUID } from "node:crypto";
import { App, EnvelopeType } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { MAX_PENDING_SENDS } from "../src/live/connections.js";
import {
  addDevice,
  api,
  fakeBody,
  openStream,
  signup,
  sleep,
  startStack,
  textOf,
  whatsappSide,
  type Gateway,
  type TestUser,
} from "./harness.js";

type Devices = { deviceId: number; registrationId: number }[];

/** Sends a fake ciphertext to every listed device of `to`. */
function send(
  gw: Gateway,
  from: TestUser,
  recipient: object,
  devices: Devices,
  text: string,
  extra: object = {},
) {
  return api<Record<string, unknown>>(gw, "POST", "/v1/me/messages", {
    token: from.token,
    body: {
      recipient,
      messaging_type: "RESPONSE",
      ...extra,
      message: {
        mid: randomUUID(),
        ciphertexts: devices.map((d) => ({
          device_id: d.deviceId,
          registration_id: d.registrationId,
          type: "ciphertext",
          body: fakeBody(text),
        })),
      },
    },
  });
}

describe("the Send API and the WebSocket", () => {
  test("delivers a message in the native form and a delivery receipt back to the sender", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const aStream = await openStream(gateway, a);
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.events.some((e) => e.type === "queue_empty"));
    const mid = randomUUID();
    const sent = await api(gateway, "POST", "/v1/me/messages", {
      token: a.token,
      body: {
        recipient: { id: b.userId },
        messaging_type: "UPDATE",
        message: {
          mid,
          timestamp: 1_700_000_000_000,
          ciphertexts: [
            { device_id: 1, registration_id: b.registrationId, type: "prekey", body: fakeBody("hi") },
          ],
        },
      },
    });
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({ recipient_id: b.accountId, mid, duplicate: false });
    await bStream.until(() => bStream.messages().length === 1);
    const [event] = bStream.messages();
    expect(event).toMatchObject({
      type: "message",
      server_id: sent.body.message_id,
      mid,
      kind: "prekey",
      sender: { account_id: a.accountId, app: "messenger", id: a.userId },
      sender_device: 1,
      sender_registration_id: a.registrationId,
      timestamp: 1_700_000_000_000,
      server_timestamp: sent.body.timestamp,
      urgent: true,
      seq: expect.any(Number) as number,
    });
    expect(textOf(event ?? {})).toBe("hi");
    await aStream.until(() => aStream.deliveries().length === 1);
    expect(aStream.deliveries()[0]).toMatchObject({
      type: "delivery",
      sender: { account_id: b.accountId, app: "messenger", id: b.userId },
      sender_device: 1,
      delivery: { mids: [mid], watermark: 1_700_000_000_000 },
    });
  });

  test("server_receipt: false spares the sender the delivery receipt of that message only", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const aStream = await openStream(gateway, a);
    const quiet = await send(gateway, a, { id: b.userId }, [b], "quiet", { server_receipt: false });
    const loud = await send(gateway, a, { id: b.userId }, [b], "loud");
    expect([quiet.status, loud.status]).toEqual([200, 200]);
    // B's device acknowledges both, in order: a receipt for the first would be queued before the second's.
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.messages().length === 2);
    expect(bStream.messages().map(textOf)).toEqual(["quiet", "loud"]);
    await aStream.until(() => aStream.deliveries().length >= 1);
    await sleep(300);
    expect(aStream.deliveries()).toHaveLength(1);
    expect(aStream.deliveries()[0]).toMatchObject({
      sender: { account_id: b.accountId },
      delivery: { mids: [loud.body.mid] },
    });
  });

  test("a non-boolean server_receipt is a 400 INVALID_REQUEST problem; nothing is stored", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const r = await send(gateway, a, { id: b.userId }, [b], "x", { server_receipt: "no" });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ reason: "INVALID_REQUEST", code: "INVALID_ARGUMENT" });
    expect(r.body.errors).toEqual([
      expect.objectContaining({ location: "body", pointer: "/server_receipt", keyword: "type" }),
    ]);
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.events.some((e) => e.type === "queue_empty"));
    expect(bStream.messages()).toHaveLength(0);
  });

  test("a retry with the same mid is answered as a duplicate and delivered once", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const body = {
      recipient: { account_id: b.accountId },
      message: {
        mid: "retry-1",
        ciphertexts: [
          { device_id: 1, registration_id: b.registrationId, type: "ciphertext", body: fakeBody("x") },
        ],
      },
    };
    const first = await api(gateway, "POST", "/v1/me/messages", { token: a.token, body });
    const again = await api(gateway, "POST", "/v1/me/messages", { token: a.token, body });
    expect(again.body).toMatchObject({ message_id: first.body.message_id, duplicate: true });
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.events.some((e) => e.type === "queue_empty"));
    expect(bStream.messages()).toHaveLength(1);
  });

  test("an offline device catches up in order, then gets queue_empty", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    for (let i = 0; i < 5; i++)
      expect((await send(gateway, a, { id: b.userId }, [b], `m${i}`)).status).toBe(200);
    const bStream = await openStream(gateway, b, { window: 2 });
    await bStream.until(() => bStream.events.some((e) => e.type === "queue_empty"));
    const texts = bStream.messages().map(textOf);
    expect(texts).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    const seqs = bStream.messages().map((m) => m.seq);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    expect(bStream.events.findIndex((e) => e.type === "queue_empty")).toBe(5);
  });

  test("unacknowledged messages come again on the next connection; acknowledged ones do not", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    await send(gateway, a, { id: b.userId }, [b], "keep");
    const first = await openStream(gateway, b, { autoAck: false });
    await first.until(() => first.messages().length === 1);
    await first.close();
    const second = await openStream(gateway, b, { autoAck: false });
    await second.until(() => second.messages().length === 1);
    expect(second.messages()[0]?.server_id).toBe(first.messages()[0]?.server_id);
    const acked = await api(gateway, "POST", "/v1/me/acks", {
      token: b.token,
      body: { ids: [second.messages()[0]?.server_id] },
    });
    expect(acked.body).toEqual({ acknowledged: 1 });
    await second.close();
    const third = await openStream(gateway, b);
    await third.until(() => third.events.some((e) => e.type === "queue_empty"));
    expect(third.messages()).toHaveLength(0);
  });

  test("a device mismatch is a 409 DEVICES_CHANGED problem with missing, extra and stale lists", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const b2 = await addDevice(gateway, b);
    const missing = await send(gateway, a, { id: b.userId }, [b], "x");
    expect(missing.status).toBe(409);
    expect(missing.headers.get("content-type")).toContain("application/problem+json");
    expect(missing.body).toMatchObject({
      type: "/errors/devices-changed",
      reason: "DEVICES_CHANGED",
      account_id: b.accountId,
      missing: [2],
      extra: [],
      stale: [],
    });
    const extra = await send(gateway, a, { id: b.userId }, [b, b2, { deviceId: 3, registrationId: 9 }], "x");
    expect(extra.body).toMatchObject({ reason: "DEVICES_CHANGED", missing: [], extra: [3] });
    const stale = await send(
      gateway,
      a,
      { id: b.userId },
      [b, { ...b2, registrationId: b2.registrationId + 1 }],
      "x",
    );
    expect(stale.body).toMatchObject({ reason: "DEVICES_CHANGED", stale: [2], missing: [], extra: [] });
    expect((await send(gateway, a, { id: b.userId }, [b, b2], "x")).status).toBe(200);
  });

  test("an unknown recipient is a 404 RECIPIENT_NOT_FOUND problem", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    for (const recipient of [
      { id: "999999999999" },
      { account_id: randomUUID() },
      { app: "instagram", username: "no.one" },
    ]) {
      const r = await send(gateway, a, recipient, [{ deviceId: 1, registrationId: 1 }], "x");
      expect(r.status, JSON.stringify(recipient)).toBe(404);
      expect(r.body).toMatchObject({ reason: "RECIPIENT_NOT_FOUND", code: "NOT_FOUND" });
    }
    const bad = await send(
      gateway,
      a,
      { app: "whatsapp", id: "1" },
      [{ deviceId: 1, registrationId: 1 }],
      "x",
    );
    expect(bad.body).toMatchObject({ status: 400, reason: "INVALID_RECIPIENT" });
  });

  test("messages users of another app by their native handle, and hears back from them", async () => {
    const { gateway, delivery } = await startStack();
    const a = await signup(gateway);
    const wa = whatsappSide(delivery.target);
    const w = await wa.register();
    const inbox = wa.receive(w);
    const sent = await send(gateway, a, { app: "whatsapp", phone: w.phone }, [w], "to whatsapp", {
      notification_type: "NO_PUSH",
    });
    expect(sent.body).toMatchObject({ recipient_id: w.accountId });
    await inbox.until(1);
    expect(inbox.got[0]).toMatchObject({
      id: sent.body.message_id,
      type: EnvelopeType.CIPHERTEXT,
      source: { accountId: a.accountId, deviceId: 1 },
      sourceApp: App.MESSENGER,
      destinationApp: App.WHATSAPP,
      urgent: false,
    });

    const aStream = await openStream(gateway, a);
    const reply = await wa.link.send({
      sender: w,
      destinationAccountId: a.accountId,
      messages: [
        {
          deviceId: 1,
          registrationId: a.registrationId,
          type: EnvelopeType.CIPHERTEXT,
          content: Buffer.from("from wa"),
        },
      ],
      clientMessageId: "wa-1",
      clientTimestampMs: 5n,
    });
    expect(reply.result.case).toBe("sent");
    await aStream.until(() => aStream.messages().length === 1);
    expect(aStream.messages()[0]).toMatchObject({
      sender: { account_id: w.accountId, app: "whatsapp", phone: w.phone },
      mid: "wa-1",
      timestamp: 5,
    });
    // The WhatsApp side acknowledged our message: its receipt names the WhatsApp user too.
    await aStream.until(() => aStream.deliveries().length === 1);
    expect(aStream.deliveries()[0]?.sender).toMatchObject({ app: "whatsapp", phone: w.phone });
  });

  test("a sender action is ephemeral: connected devices get it, offline ones never do", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const b2 = await addDevice(gateway, b);
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.events.some((e) => e.type === "queue_empty"));
    const typing = await send(gateway, a, { id: b.userId }, [b, b2], "typing", {
      sender_action: "typing_on",
    });
    expect(typing.status).toBe(200);
    await bStream.until(() => bStream.messages().length === 1);
    expect(bStream.messages()[0]).toMatchObject({ ephemeral: true });
    const b2Stream = await openStream(gateway, b2);
    await b2Stream.until(() => b2Stream.events.some((e) => e.type === "queue_empty"));
    await sleep(200);
    expect(b2Stream.messages()).toHaveLength(0);
  });

  test("a second socket of the same device displaces the first", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const first = await openStream(gateway, b);
    await first.until(() => first.events.some((e) => e.type === "queue_empty"));
    const second = await openStream(gateway, b);
    await first.until(() => first.closeCode !== undefined);
    expect(first.events.at(-1)).toEqual({ type: "displaced" });
    expect(first.closeCode).toBe(4000);
    await second.until(() => second.events.some((e) => e.type === "queue_empty"));
    await send(gateway, a, { id: b.userId }, [b], "to the second");
    await second.until(() => second.messages().length === 1);
    expect(first.messages()).toHaveLength(0);
    expect(gateway.app.live.size).toBe(1);
  });

  test("bad frames get an error event and the socket stays up", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const bStream = await openStream(gateway, b);
    bStream.send("{not json");
    bStream.send({ type: "subscribe" });
    bStream.send({ type: "ack", ids: ["nope"] });
    bStream.socket.send(Buffer.from([1, 2, 3]), { binary: true });
    bStream.send({ type: "ping" });
    await bStream.until(() => bStream.events.some((e) => e.type === "pong"));
    const errors = bStream.events.filter((e) => e.type === "error");
    expect(errors.map((e) => e.type === "error" && e.problem.reason)).toEqual([
      "INVALID_JSON",
      "INVALID_FRAME",
      "INVALID_FRAME",
      "BINARY_FRAME",
    ]);
    expect(errors[0]).toMatchObject({
      problem: { status: 400, code: "INVALID_ARGUMENT", type: "/errors/invalid-json" },
    });
    await send(gateway, a, { id: b.userId }, [b], "still here");
    await bStream.until(() => bStream.messages().length === 1);
    expect(bStream.closeCode).toBeUndefined();
  });

  test("authenticates the upgrade by header or query token and refuses bad tokens", async () => {
    const { gateway } = await startStack();
    const b = await signup(gateway);
    const viaQuery = await openStream(gateway, b, { viaQuery: true });
    await viaQuery.until(() => viaQuery.events.some((e) => e.type === "queue_empty"));
    await expect(openStream(gateway, { token: "B".repeat(43) })).rejects.toThrow(/401/);
    const plain = await api(gateway, "GET", "/v1/stream", { token: b.token });
    expect(plain.body).toMatchObject({ status: 400, reason: "UPGRADE_REQUIRED" });
  });

  test("removing a device closes its socket", async () => {
    const { gateway } = await startStack();
    const b = await signup(gateway);
    const b2 = await addDevice(gateway, b);
    const stream = await openStream(gateway, b2);
    await stream.until(() => stream.events.some((e) => e.type === "queue_empty"));
    expect((await api(gateway, "DELETE", `/v1/me/devices/${b2.deviceId}`, { token: b.token })).status).toBe(
      204,
    );
    await stream.until(() => stream.closeCode !== undefined);
    expect(stream.closeCode).toBe(4001);
    expect(stream.events.at(-1)).toMatchObject({ type: "error", problem: { reason: "DEVICE_REMOVED" } });
  });
});

describe("sends on the WebSocket", () => {
  const ciphertexts = (devices: Devices, text: string) =>
    devices.map((d) => ({
      device_id: d.deviceId,
      registration_id: d.registrationId,
      type: "ciphertext",
      body: fakeBody(text),
    }));

  test("pipelined send frames are answered by ref and delivered in order, a retry as a duplicate", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const aStream = await openStream(gateway, a);
    const bStream = await openStream(gateway, b);
    // More frames than MAX_PENDING_SENDS at once: the server stops reading the socket and resumes.
    const n = MAX_PENDING_SENDS + 44;
    for (let i = 0; i < n; i++)
      aStream.send({
        type: "send",
        ref: `r${i}`,
        recipient: { id: b.userId },
        message: { mid: `ws-${i}`, ciphertexts: ciphertexts([b], `m${i}`) },
      });
    await aStream.until(() => aStream.results().size === n, 30_000);
    const results = aStream.results();
    expect(results.get("r0")).toEqual({
      type: "send_result",
      ref: "r0",
      result: {
        recipient_id: b.accountId,
        message_id: expect.any(String) as string,
        mid: "ws-0",
        timestamp: expect.any(Number) as number,
        duplicate: false,
      },
    });
    expect([...results.values()].filter((r) => r.result?.duplicate === false)).toHaveLength(n);
    await bStream.until(() => bStream.messages().length === n, 30_000);
    expect(bStream.messages().map(textOf)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    expect(bStream.messages()[0]?.server_id).toBe(results.get("r0")?.result?.message_id);

    aStream.send({
      type: "send",
      ref: "again",
      recipient: { account_id: b.accountId },
      message: { mid: "ws-0", ciphertexts: ciphertexts([b], "m0") },
    });
    await aStream.until(() => aStream.results().has("again"));
    expect(aStream.results().get("again")?.result).toMatchObject({
      message_id: results.get("r0")?.result?.message_id,
      duplicate: true,
    });
    await sleep(200);
    expect(bStream.messages()).toHaveLength(n);
  });

  test("a failed send is answered under its ref with the REST call's problem; nothing is stored", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const aStream = await openStream(gateway, a);
    aStream.send({
      type: "send",
      ref: "unknown",
      recipient: { account_id: randomUUID() },
      message: { ciphertexts: ciphertexts([b], "x") },
    });
    aStream.send({
      type: "send",
      ref: "stale",
      recipient: { id: b.userId },
      message: { ciphertexts: [{ ...ciphertexts([b], "x")[0], registration_id: b.registrationId + 1 }] },
    });
    aStream.send({
      type: "send",
      ref: "invalid",
      recipient: { id: b.userId },
      message: {
        ciphertexts: [{ device_id: 1, registration_id: b.registrationId, type: "bogus", body: "%" }],
      },
      extra: true,
    });
    aStream.send({ type: "send", recipient: { id: b.userId }, message: {} });
    await aStream.until(() => aStream.results().size === 3 && aStream.events.some((e) => e.type === "error"));
    const results = aStream.results();
    expect(results.get("unknown")?.problem).toMatchObject({ status: 404, reason: "RECIPIENT_NOT_FOUND" });
    expect(results.get("stale")?.problem).toMatchObject({
      status: 409,
      reason: "DEVICES_CHANGED",
      code: "ABORTED",
      account_id: b.accountId,
      stale: [1],
    });
    const invalid = results.get("invalid")?.problem;
    expect(invalid).toMatchObject({ status: 400, reason: "INVALID_REQUEST", code: "INVALID_ARGUMENT" });
    expect((invalid?.errors as { pointer: string }[]).map((e) => e.pointer)).toEqual(
      expect.arrayContaining(["/", "/message/ciphertexts/0/type", "/message/ciphertexts/0/body"]),
    );
    expect(aStream.events.find((e) => e.type === "error")).toMatchObject({
      problem: { status: 400, reason: "INVALID_FRAME" },
    });
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.events.some((e) => e.type === "queue_empty"));
    expect(bStream.messages()).toHaveLength(0);
    expect(aStream.closeCode).toBeUndefined();
  });

  test("a send frame with server_receipt: false gets no delivery receipt; a non-boolean is INVALID_REQUEST", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const aStream = await openStream(gateway, a);
    const frame = (ref: string, extra: object) => ({
      type: "send",
      ref,
      recipient: { id: b.userId },
      ...extra,
      message: { mid: ref, ciphertexts: ciphertexts([b], ref) },
    });
    aStream.send(frame("bad", { server_receipt: "no" }));
    aStream.send(frame("quiet", { server_receipt: false }));
    aStream.send(frame("loud", { server_receipt: true }));
    await aStream.until(() => aStream.results().size === 3);
    const bad = aStream.results().get("bad")?.problem;
    expect(bad).toMatchObject({ status: 400, reason: "INVALID_REQUEST", code: "INVALID_ARGUMENT" });
    expect(bad?.errors).toEqual([
      expect.objectContaining({ location: "frame", pointer: "/server_receipt", keyword: "type" }),
    ]);
    expect(aStream.results().get("quiet")?.result).toMatchObject({ mid: "quiet", duplicate: false });
    expect(aStream.results().get("loud")?.result).toMatchObject({ mid: "loud", duplicate: false });
    const bStream = await openStream(gateway, b);
    await bStream.until(() => bStream.messages().length === 2);
    expect(bStream.messages().map((m) => m.mid)).toEqual(["quiet", "loud"]);
    await aStream.until(() => aStream.deliveries().length >= 1);
    await sleep(300);
    expect(aStream.deliveries().map((d) => d.delivery.mids)).toEqual([["loud"]]);
  });

  test("send_group frames fan out to the members; a non-member gets NOT_A_MEMBER", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const c = await signup(gateway);
    const created = await api<{ id: string }>(gateway, "POST", "/v1/groups", {
      token: a.token,
      body: { members: [{ id: b.userId }] },
    });
    const groupId = created.body.id;
    const aStream = await openStream(gateway, a);
    const bStream = await openStream(gateway, b);
    const cStream = await openStream(gateway, c);
    aStream.send({
      type: "send_group",
      ref: "g",
      group_id: groupId,
      message: { mid: "g-1", body: fakeBody("hey") },
    });
    cStream.send({ type: "send_group", ref: "out", group_id: groupId, message: { body: fakeBody("no") } });
    aStream.send({
      type: "send_group",
      ref: "bad",
      group_id: "not-a-uuid",
      message: { body: fakeBody("x") },
    });
    await aStream.until(() => aStream.results().size === 2);
    expect(aStream.results().get("g")?.result).toMatchObject({
      group_id: groupId,
      mid: "g-1",
      duplicate: false,
    });
    expect(aStream.results().get("bad")?.problem).toMatchObject({ status: 400, reason: "INVALID_REQUEST" });
    await cStream.until(() => cStream.results().has("out"));
    expect(cStream.results().get("out")?.problem).toMatchObject({ status: 403, reason: "NOT_A_MEMBER" });
    await bStream.until(() => bStream.messages().length === 1);
    expect(bStream.messages()[0]).toMatchObject({ group_id: groupId, kind: "sender_key", mid: "g-1" });
    expect(textOf(bStream.messages()[0] ?? {})).toBe("hey");
  });
});

describe("group threads", () => {
  test("creates a three-app group, fans out one sender-key body and manages members", async () => {
    const { gateway, delivery } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const c = await signup(gateway);
    const wa = whatsappSide(delivery.target);
    const w = await wa.register();

    const created = await api<{ id: string; members: { user: { account_id: string } }[] }>(
      gateway,
      "POST",
      "/v1/groups",
      {
        token: a.token,
        body: { members: [{ id: b.userId }, { app: "whatsapp", phone: w.phone }] },
      },
    );
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      creator: { account_id: a.accountId, app: "messenger", id: a.userId },
      revision: expect.any(Number) as number,
    });
    expect(created.body.members.map((m) => m.user.account_id).sort()).toEqual(
      [a.accountId, b.accountId, w.accountId].sort(),
    );
    const groupId = created.body.id;
    const read = await api(gateway, "GET", `/v1/groups/${groupId}`, { token: b.token });
    expect(read.body).toMatchObject({
      id: groupId,
      members: expect.arrayContaining([
        {
          user: { account_id: w.accountId, app: "whatsapp", phone: w.phone },
          devices: [expect.objectContaining({ device_id: 1 })],
        },
      ]) as unknown[],
    });

    const bStream = await openStream(gateway, b);
    const inbox = wa.receive(w);
    const sent = await api(gateway, "POST", `/v1/groups/${groupId}/messages`, {
      token: a.token,
      body: { message: { mid: "g-1", body: fakeBody("hello group") } },
    });
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({ group_id: groupId, mid: "g-1", duplicate: false });
    await bStream.until(() => bStream.messages().length === 1);
    expect(bStream.messages()[0]).toMatchObject({
      group_id: groupId,
      kind: "sender_key",
      mid: "g-1",
      sender: { account_id: a.accountId, id: a.userId },
    });
    expect(textOf(bStream.messages()[0] ?? {})).toBe("hello group");
    await inbox.until(1);
    expect(inbox.got[0]).toMatchObject({
      groupId,
      type: EnvelopeType.SENDER_KEY_MESSAGE,
      sourceApp: App.MESSENGER,
    });

    const mismatch = await api(gateway, "POST", `/v1/groups/${groupId}/messages`, {
      token: a.token,
      body: {
        message: { body: fakeBody("x") },
        expected_recipients: [
          { user: { id: b.userId }, devices: [{ device_id: 1, registration_id: b.registrationId + 1 }] },
        ],
      },
    });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body).toMatchObject({
      reason: "DEVICES_CHANGED",
      accounts: expect.arrayContaining([
        { account_id: b.accountId, missing: [], extra: [], stale: [1] },
      ]) as unknown[],
    });

    const outsider = await api(gateway, "POST", `/v1/groups/${groupId}/messages`, {
      token: c.token,
      body: { message: { body: fakeBody("x") } },
    });
    expect(outsider).toMatchObject({ status: 403, body: { reason: "NOT_A_MEMBER" } });

    const added = await api<{ members: unknown[] }>(gateway, "POST", `/v1/groups/${groupId}/members`, {
      token: b.token,
      body: { members: [{ account_id: c.accountId }] },
    });
    expect(added.body.members).toHaveLength(4);
    const removed = await api<{ members: unknown[]; revision: number }>(
      gateway,
      "DELETE",
      `/v1/groups/${groupId}/members/whatsapp:${encodeURIComponent(w.phone)}`,
      { token: a.token },
    );
    expect(removed.status).toBe(200);
    expect(removed.body.members).toHaveLength(3);
    const notFound = await api(gateway, "GET", `/v1/groups/${randomUUID()}`, { token: a.token });
    expect(notFound.status).toBeGreaterThanOrEqual(400);
  });
});
