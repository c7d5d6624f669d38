import { create } from "@bufbuild/protobuf";
import {
  App,
  EnvelopeType,
  SendGroupMessageRequestSchema,
  SendMessageRequestSchema,
} from "@switchboard/proto";
import type { AddressInfo } from "node:net";
import { Code } from "@switchboard/errors";
import { afterEach, describe, expect, onTestFinished, test, vi } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { createMessengerTransport, messengerEventToEnvelope } from "./messenger-transport.js";

const self = { accountId: "0b6f3c52-3a4e-4a43-9a55-0c7e0b1e9d10", deviceId: 2 };
const peer = "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01";

/** Stubs the global fetch with one canned answer and records the requests. */
function answer(status: number, body: unknown) {
  const calls: { url: string; init: RequestInit }[] = [];
  vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": status < 300 ? "application/json" : "application/problem+json" },
    });
  });
  return calls;
}

function transport() {
  const t = createMessengerTransport({ baseUrl: "http://gateway.test/", accessToken: "t".repeat(43) });
  t.setDeviceCredentials({ ...self, password: "unused" });
  return t;
}

const sendRequest = create(SendMessageRequestSchema, {
  destinationAccountId: peer,
  messages: [
    { deviceId: 1, registrationId: 7, type: EnvelopeType.PREKEY_MESSAGE, content: new Uint8Array([1, 2]) },
  ],
  clientMessageId: "m-1",
  clientTimestampMs: 1234n,
  urgent: true,
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("messengerEventToEnvelope", () => {
  test("rebuilds a message envelope from a message event", () => {
    const envelope = messengerEventToEnvelope(
      {
        type: "message",
        server_id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11",
        seq: 3,
        server_timestamp: 2000,
        sender: { account_id: peer, app: "provider:acme", handle: "alice" },
        sender_device: 4,
        sender_registration_id: 99,
        mid: "m-1",
        kind: "sender_key",
        body: "AQID",
        timestamp: 1000,
        group_id: "c1a4d2c0-8a52-4f3c-9d57-0f8a1f6f2a11",
        urgent: true,
      },
      self,
    );
    expect(envelope).toMatchObject({
      id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11",
      type: EnvelopeType.SENDER_KEY_MESSAGE,
      source: { accountId: peer, deviceId: 4 },
      sourceApp: App.THIRD_PARTY,
      sourceProviderId: "acme",
      sourceRegistrationId: 99,
      destination: self,
      destinationApp: App.MESSENGER,
      content: new Uint8Array([1, 2, 3]),
      clientMessageId: "m-1",
      clientTimestampMs: 1000n,
      serverTimestampMs: 2000n,
      sequence: 3n,
      urgent: true,
      ephemeral: false,
      groupId: "c1a4d2c0-8a52-4f3c-9d57-0f8a1f6f2a11",
    });
  });

  test("rebuilds a server delivery receipt from a delivery event", () => {
    const envelope = messengerEventToEnvelope(
      {
        type: "delivery",
        server_id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11",
        seq: 4,
        server_timestamp: 2000,
        sender: { account_id: peer, app: "whatsapp", phone: "+15551234567" },
        sender_device: 1,
        delivery: { mids: ["m-1"], watermark: 1000 },
      },
      self,
    );
    expect(envelope).toMatchObject({
      type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
      sourceApp: App.WHATSAPP,
      clientMessageId: "m-1",
      clientTimestampMs: 1000n,
      content: new Uint8Array(0),
    });
  });
});

describe("MessengerTransport sends", () => {
  test("posts the Send API body with the bearer token and maps 200 to sent", async () => {
    const calls = answer(200, {
      recipient_id: peer,
      message_id: "s-1",
      mid: "m-1",
      timestamp: 5,
      duplicate: false,
    });
    expect(await transport().sendMessage(sendRequest)).toEqual({
      kind: "sent",
      messageId: "s-1",
      serverTimestampMs: 5,
      duplicate: false,
    });
    expect(calls[0]?.url).toBe("http://gateway.test/v1/me/messages");
    expect(new Headers(calls[0]?.init.headers).get("authorization")).toBe(`Bearer ${"t".repeat(43)}`);
    expect(JSON.parse(calls[0]?.init.body as string)).toEqual({
      recipient: { account_id: peer },
      notification_type: "REGULAR",
      message: {
        mid: "m-1",
        timestamp: 1234,
        ciphertexts: [{ device_id: 1, registration_id: 7, type: "prekey", body: "AQI=" }],
      },
    });
  });

  test("noDeliveryReceipt posts server_receipt: false", async () => {
    const calls = answer(200, {
      recipient_id: peer,
      message_id: "s-1",
      mid: "m-1",
      timestamp: 5,
      duplicate: false,
    });
    const t = transport();
    await t.sendMessage(create(SendMessageRequestSchema, { ...sendRequest, noDeliveryReceipt: true }));
    expect(JSON.parse(calls[0]?.init.body as string)).toMatchObject({
      recipient: { account_id: peer },
      server_receipt: false,
      message: { mid: "m-1" },
    });
    await t.sendMessage(sendRequest);
    expect(JSON.parse(calls[1]?.init.body as string)).not.toHaveProperty("server_receipt");
  });

  test("maps 409 DEVICES_CHANGED to the mismatched and stale outcomes and 404 to not_found", async () => {
    answer(409, { reason: "DEVICES_CHANGED", account_id: peer, missing: [2], extra: [3], stale: [] });
    expect(await transport().sendMessage(sendRequest)).toEqual({
      kind: "mismatched",
      accountId: peer,
      missingDevices: [2],
      extraDevices: [3],
    });
    answer(409, { reason: "DEVICES_CHANGED", account_id: peer, missing: [], extra: [], stale: [1] });
    expect(await transport().sendMessage(sendRequest)).toEqual({
      kind: "stale",
      accountId: peer,
      staleDevices: [1],
    });
    answer(404, { reason: "RECIPIENT_NOT_FOUND", code: "NOT_FOUND" });
    expect(await transport().sendMessage(sendRequest)).toEqual({ kind: "not_found" });
  });

  test("maps group outcomes and throws other problems as AppError with their code and reason", async () => {
    const group = create(SendGroupMessageRequestSchema, {
      groupId: "g",
      content: new Uint8Array([9]),
      clientMessageId: "m",
    });
    answer(409, {
      reason: "DEVICES_CHANGED",
      accounts: [{ account_id: peer, missing: [], extra: [], stale: [2] }],
    });
    expect(await transport().sendGroupMessage(group)).toEqual({
      kind: "mismatched",
      accounts: [{ accountId: peer, missingDevices: [], extraDevices: [], staleDevices: [2] }],
    });
    answer(403, { reason: "NOT_A_MEMBER", code: "PERMISSION_DENIED" });
    expect(await transport().sendGroupMessage(group)).toEqual({ kind: "not_a_member" });
    answer(503, { reason: "LINK_RECONNECTING", code: "UNAVAILABLE", detail: "retry" });
    await expect(transport().sendMessage(sendRequest)).rejects.toMatchObject({
      code: 14,
      reason: "LINK_RECONNECTING",
    });
  });

  test("fails UNAUTHENTICATED without an access token", async () => {
    const t = createMessengerTransport({ baseUrl: "http://gateway.test" });
    t.setDeviceCredentials({ ...self, password: "unused" });
    await expect(t.sendMessage(sendRequest)).rejects.toMatchObject({ reason: "NO_ACCESS_TOKEN" });
  });

  test("calls the fetch passed in options instead of the global one", async () => {
    const global = answer(500, {});
    const calls: string[] = [];
    const t = createMessengerTransport({
      baseUrl: "http://gateway.test",
      accessToken: "t".repeat(43),
      fetch: async (url) => {
        calls.push(url as string);
        return new Response(
          JSON.stringify({ message_id: "s-1", mid: "m-1", timestamp: 5, duplicate: false }),
          {
            status: 200,
          },
        );
      },
    });
    t.setDeviceCredentials({ ...self, password: "unused" });
    expect(await t.sendMessage(sendRequest)).toMatchObject({ kind: "sent", messageId: "s-1" });
    expect(calls).toEqual(["http://gateway.test/v1/me/messages"]);
    expect(global).toHaveLength(0);
  });
});

describe("MessengerTransport call deadlines", () => {
  test("a call the gateway does not answer in callTimeoutMs fails DEADLINE_EXCEEDED GATEWAY_TIMEOUT", async () => {
    const fetch = (_url: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason as Error));
      });
    const t = createMessengerTransport({
      baseUrl: "http://gateway.test/",
      accessToken: "t".repeat(43),
      fetch,
      callTimeoutMs: 20,
    });
    t.setDeviceCredentials({ ...self, password: "unused" });
    const err = await t.block(peer).then(
      () => undefined,
      (e: unknown) => e as { code: number; reason: string },
    );
    expect(err).toMatchObject({ code: Code.DeadlineExceeded, reason: "GATEWAY_TIMEOUT" });
  });

  test("a call's deadline ends with the call: its signal is never aborted afterwards", async () => {
    const signals: AbortSignal[] = [];
    const t = createMessengerTransport({
      baseUrl: "http://gateway.test/",
      accessToken: "t".repeat(43),
      fetch: async (_url, init) => {
        if (init?.signal) signals.push(init.signal);
        return new Response(null, { status: 204 });
      },
      callTimeoutMs: 20,
    });
    t.setDeviceCredentials({ ...self, password: "unused" });
    await t.block(peer);
    await new Promise((r) => setTimeout(r, 60));
    expect(signals).toHaveLength(1);
    expect(signals[0]?.aborted).toBe(false);
  });
});

describe("MessengerTransport sends on the live socket", () => {
  /** A WebSocket server standing in for the gateway's /v1/stream: records frames, answers with `reply`. */
  async function socketGateway(reply: (frame: Record<string, unknown>, socket: WebSocket) => void) {
    const server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise<void>((resolve) => server.once("listening", resolve));
    const frames: Record<string, unknown>[] = [];
    server.on("connection", (socket) => {
      socket.send(JSON.stringify({ type: "queue_empty" }));
      socket.on("message", (data: Buffer) => {
        const frame = JSON.parse(data.toString("utf8")) as Record<string, unknown>;
        frames.push(frame);
        reply(frame, socket);
      });
    });
    onTestFinished(
      () =>
        new Promise<void>((resolve) => {
          for (const c of server.clients) c.terminate();
          server.close(() => resolve());
        }),
    );
    const { port } = server.address() as AddressInfo;
    const t = createMessengerTransport({ baseUrl: `http://127.0.0.1:${port}`, accessToken: "t".repeat(43) });
    t.setDeviceCredentials({ ...self, password: "unused" });
    const events = t.receive()[Symbol.asyncIterator]();
    expect((await events.next()).value).toEqual({ kind: "queue_empty" });
    onTestFinished(() => t.close());
    return { t, frames };
  }

  test("a send is a frame with a ref, answered by its send_result; problems map as over HTTP", async () => {
    const { t, frames } = await socketGateway((frame, socket) => {
      const ref = frame.ref as string;
      if (frame.type === "send_group")
        socket.send(
          JSON.stringify({ type: "send_result", ref, problem: { status: 403, reason: "NOT_A_MEMBER" } }),
        );
      else if ((frame.message as { mid: string }).mid === "m-1")
        socket.send(
          JSON.stringify({
            type: "send_result",
            ref,
            result: { recipient_id: peer, message_id: "s-1", mid: "m-1", timestamp: 5, duplicate: false },
          }),
        );
      else
        socket.send(
          JSON.stringify({
            type: "send_result",
            ref,
            problem: { status: 409, reason: "DEVICES_CHANGED", account_id: peer, missing: [3], extra: [] },
          }),
        );
    });
    const calls = answer(500, {});
    expect(await t.sendMessage(sendRequest)).toEqual({
      kind: "sent",
      messageId: "s-1",
      serverTimestampMs: 5,
      duplicate: false,
    });
    expect(frames[0]).toMatchObject({
      type: "send",
      ref: expect.any(String) as string,
      recipient: { account_id: peer },
      message: { mid: "m-1" },
    });
    expect(
      await t.sendMessage(create(SendMessageRequestSchema, { ...sendRequest, clientMessageId: "m-2" })),
    ).toEqual({ kind: "mismatched", accountId: peer, missingDevices: [3], extraDevices: [] });
    const group = create(SendGroupMessageRequestSchema, {
      groupId: peer,
      content: new Uint8Array([1]),
      clientMessageId: "g-1",
    });
    expect(await t.sendGroupMessage(group)).toEqual({ kind: "not_a_member" });
    expect(frames[2]).toMatchObject({ type: "send_group", group_id: peer, message: { mid: "g-1" } });
    expect(new Set(frames.map((f) => f.ref)).size).toBe(3);
    expect(calls).toHaveLength(0);
  });

  test("noDeliveryReceipt puts server_receipt: false in the send frame", async () => {
    const { t, frames } = await socketGateway((frame, socket) => {
      const mid = (frame.message as { mid: string }).mid;
      socket.send(
        JSON.stringify({
          type: "send_result",
          ref: frame.ref,
          result: { recipient_id: peer, message_id: `s-${mid}`, mid, timestamp: 5, duplicate: false },
        }),
      );
    });
    const calls = answer(500, {});
    expect(
      await t.sendMessage(create(SendMessageRequestSchema, { ...sendRequest, noDeliveryReceipt: true })),
    ).toMatchObject({ kind: "sent", messageId: "s-m-1" });
    expect(
      await t.sendMessage(create(SendMessageRequestSchema, { ...sendRequest, clientMessageId: "m-2" })),
    ).toMatchObject({ kind: "sent", messageId: "s-m-2" });
    expect(frames[0]).toMatchObject({ type: "send", server_receipt: false, message: { mid: "m-1" } });
    expect(frames[1]).toMatchObject({ type: "send", message: { mid: "m-2" } });
    expect(frames[1]).not.toHaveProperty("server_receipt");
    expect(calls).toHaveLength(0);
  });

  test("a send larger than the gateway's frame limit is a POST", async () => {
    const { t, frames } = await socketGateway(() => undefined);
    const calls = answer(200, {
      recipient_id: peer,
      message_id: "s-9",
      mid: "m-1",
      timestamp: 9,
      duplicate: false,
    });
    const big = create(SendMessageRequestSchema, {
      destinationAccountId: peer,
      messages: [
        { deviceId: 1, registrationId: 7, type: EnvelopeType.CIPHERTEXT, content: new Uint8Array(50_000) },
      ],
      clientMessageId: "m-1",
    });
    expect(await t.sendMessage(big)).toMatchObject({ kind: "sent", messageId: "s-9" });
    expect(calls).toHaveLength(1);
    expect(frames).toHaveLength(0);
  });

  test("sends awaiting results when the socket closes fail as retryable STREAM_CLOSED", async () => {
    const { t } = await socketGateway((_frame, socket) => socket.close(1001));
    await expect(t.sendMessage(sendRequest)).rejects.toMatchObject({
      code: Code.Unavailable,
      reason: "STREAM_CLOSED",
    });
    // With the socket gone, the next send is a POST.
    const calls = answer(200, {
      recipient_id: peer,
      message_id: "s-2",
      mid: "m-1",
      timestamp: 6,
      duplicate: true,
    });
    expect(await t.sendMessage(sendRequest)).toMatchObject({
      kind: "sent",
      messageId: "s-2",
      duplicate: true,
    });
    expect(calls[0]?.url).toMatch(/\/v1\/me\/messages$/);
  });

  test("sendOverSocket: false always posts", async () => {
    const server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise<void>((resolve) => server.once("listening", resolve));
    server.on("connection", (socket) => socket.send(JSON.stringify({ type: "queue_empty" })));
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;
    const t = createMessengerTransport({
      baseUrl: `http://127.0.0.1:${port}`,
      accessToken: "t".repeat(43),
      sendOverSocket: false,
    });
    t.setDeviceCredentials({ ...self, password: "unused" });
    const events = t.receive()[Symbol.asyncIterator]();
    expect((await events.next()).value).toEqual({ kind: "queue_empty" });
    onTestFinished(() => t.close());
    const calls = answer(200, {
      recipient_id: peer,
      message_id: "s-3",
      mid: "m-1",
      timestamp: 7,
      duplicate: false,
    });
    expect(await t.sendMessage(sendRequest)).toMatchObject({ kind: "sent", messageId: "s-3" });
    expect(calls).toHaveLength(1);
  });
});
