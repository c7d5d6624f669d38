import { create } from "@bufbuild/protobuf";
import { EnvelopeType, SendGroupMessageRequestSchema, SendMessageRequestSchema } from "@switchboard/proto";
import { Code } from "@switchboard/errors";
import { describe, expect, test } from "vitest";
import { createInstagramTransport } from "./instagram-transport.js";

const self = { accountId: "0b6f3c52-3a4e-4a43-9a55-0c7e0b1e9d10", deviceId: 2, password: "unused" };
const peer = "5a2d0c1e-6a1f-4c55-9e0e-2f0f5f9d8a01";
const threadId = "1234567890";
const groupId = "c1a4d2c0-8a52-4f3c-9d57-0f8a1f6f2a11";

/** A transport over a fetch that answers every call with success and records each JSON body by path. */
function recordingTransport() {
  const bodies: { path: string; body: Record<string, unknown> }[] = [];
  const transport = createInstagramTransport({
    baseUrl: "http://gateway.test",
    credentials: self,
    accessToken: "t".repeat(43),
    fetch: async (input, init) => {
      // The transport calls fetch with a URL string and a JSON string body.
      const path = new URL(input).pathname;
      bodies.push({ path, body: JSON.parse(init?.body as string) as Record<string, unknown> });
      const answer =
        path === "/v1/direct/threads"
          ? { thread_id: threadId }
          : { server_id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11", server_timestamp_ms: 5, duplicate: false };
      return new Response(JSON.stringify(answer), {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    },
  });
  const itemBodies = () => bodies.filter((b) => b.path.endsWith("/items")).map((b) => b.body);
  return { transport, itemBodies };
}

const sendRequest = (noDeliveryReceipt: boolean) =>
  create(SendMessageRequestSchema, {
    destinationAccountId: peer,
    messages: [
      { deviceId: 1, registrationId: 7, type: EnvelopeType.CIPHERTEXT, content: new Uint8Array([1, 2]) },
    ],
    clientMessageId: "m-1",
    clientTimestampMs: 1234n,
    urgent: true,
    noDeliveryReceipt,
  });

describe("InstagramTransport sends", () => {
  test("posts server_receipt: false for a one-to-one send with noDeliveryReceipt", async () => {
    const { transport, itemBodies } = recordingTransport();
    expect(await transport.sendMessage(sendRequest(true))).toMatchObject({ kind: "sent" });
    expect(itemBodies()).toEqual([expect.objectContaining({ client_context: "m-1", server_receipt: false })]);
  });

  test("leaves server_receipt out (the gateway's default, receipts on) without noDeliveryReceipt", async () => {
    const { transport, itemBodies } = recordingTransport();
    await transport.sendMessage(sendRequest(false));
    expect(itemBodies()).toHaveLength(1);
    expect(itemBodies()[0]).not.toHaveProperty("server_receipt");
  });

  test("never posts server_receipt for group sends", async () => {
    const { transport, itemBodies } = recordingTransport();
    await transport.sendGroupMessage(
      create(SendGroupMessageRequestSchema, {
        groupId,
        content: new Uint8Array([3]),
        clientMessageId: "g-1",
        urgent: true,
      }),
    );
    expect(itemBodies()).toHaveLength(1);
    expect(itemBodies()[0]).not.toHaveProperty("server_receipt");
  });
});

describe("InstagramTransport call deadlines", () => {
  test("a call the gateway does not answer in callTimeoutMs fails DEADLINE_EXCEEDED GATEWAY_TIMEOUT", async () => {
    const transport = createInstagramTransport({
      baseUrl: "http://gateway.test",
      credentials: self,
      accessToken: "t".repeat(43),
      callTimeoutMs: 20,
      fetch: (_input, init) =>
        new Promise<Response>((_, reject) => {
          init?.signal?.addEventListener("abort", () => reject(init.signal?.reason as Error));
        }),
    });
    const err = await transport.sendMessage(sendRequest(false)).then(
      () => undefined,
      (e: unknown) => e as { code: number; reason: string },
    );
    expect(err).toMatchObject({ code: Code.DeadlineExceeded, reason: "GATEWAY_TIMEOUT" });
  });

  test("each call's deadline ends with the call: no signal is aborted afterwards", async () => {
    const signals: AbortSignal[] = [];
    const transport = createInstagramTransport({
      baseUrl: "http://gateway.test",
      credentials: self,
      accessToken: "t".repeat(43),
      callTimeoutMs: 20,
      fetch: async (input, init) => {
        if (init?.signal) signals.push(init.signal);
        const path = new URL(input).pathname;
        const answer =
          path === "/v1/direct/threads"
            ? { thread_id: threadId }
            : { server_id: "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11", server_timestamp_ms: 5, duplicate: false };
        return new Response(JSON.stringify(answer), { status: 200 });
      },
    });
    expect(await transport.sendMessage(sendRequest(false))).toMatchObject({ kind: "sent" });
    await new Promise((r) => setTimeout(r, 60));
    expect(signals.length).toBeGreaterThanOrEqual(2);
    expect(signals.every((s) => !s.aborted)).toBe(true);
  });
});
