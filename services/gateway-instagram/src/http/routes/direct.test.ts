import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SendGroupMessageRequestSchema, SendMessageRequestSchema } from "@switchboard/proto";
import Fastify from "fastify";
import { describe, expect, onTestFinished, test } from "vitest";
import { directThreadId } from "../../domain/thread-id.js";
import type { RouteContext } from "../context.js";
import { registerProblemHandler } from "../problem.js";
import { ajvOptions, sharedSchemas } from "../schemas.js";
import { directRoutes } from "./direct.js";

const me = { accountId: "00000000-0000-4000-8000-000000000001", deviceId: 1 };
const peer = "00000000-0000-4000-8000-000000000002";
const threadId = directThreadId(me.accountId, peer);
const groupId = "00000000-0000-4000-8000-0000000000aa";
const sent = { messageId: "00000000-0000-4000-8000-0000000000ff", serverTimestampMs: 5n, duplicate: false };

/**
 * The direct routes on a bare app (the same ajv options and problem handler as buildApp), with a
 * context that authenticates every request as `me`, knows `peer` as the thread's peer and records
 * what reaches the delivery link. Nothing here touches a database.
 */
async function directApp() {
  const sends: MessageInitShape<typeof SendMessageRequestSchema>[] = [];
  const groupSends: MessageInitShape<typeof SendGroupMessageRequestSchema>[] = [];
  const ctx = {
    auth: { authenticate: async () => me },
    threadPeers: { find: async (_owner: string, id: string) => (id === threadId ? peer : undefined) },
    hub: { ensureAccepted: async () => {}, ensureGroupAccepted: async () => {}, touchThread: async () => {} },
    link: {
      send: async (req: MessageInitShape<typeof SendMessageRequestSchema>) => {
        sends.push(req);
        return { result: { case: "sent", value: sent } };
      },
      sendGroup: async (req: MessageInitShape<typeof SendGroupMessageRequestSchema>) => {
        groupSends.push(req);
        return { result: { case: "sent", value: sent } };
      },
    },
  } as unknown as RouteContext;
  const app = Fastify({ ajv: ajvOptions });
  registerProblemHandler(app);
  for (const s of sharedSchemas) app.addSchema(s);
  await app.register(async (scope) => directRoutes(scope, ctx));
  await app.ready();
  onTestFinished(() => app.close());
  const post = (thread: string, body: Record<string, unknown>) =>
    app.inject({
      method: "POST",
      url: `/v1/direct/threads/${thread}/items`,
      headers: { authorization: "Bearer t" },
      payload: { client_context: "c-1", ...body },
    });
  return { post, sends, groupSends };
}

const ciphertexts = [{ device_id: 1, registration_id: 7, type: "ciphertext", body: "AQ==" }];

describe("directRoutes", () => {
  test("sends a one-to-one item with server_receipt: false as noDeliveryReceipt", async () => {
    const { post, sends } = await directApp();
    expect((await post(threadId, { ciphertexts, server_receipt: false })).statusCode).toBe(200);
    expect(sends.map((s) => s.noDeliveryReceipt)).toEqual([true]);
  });

  test("asks for delivery receipts when server_receipt is true or absent", async () => {
    const { post, sends } = await directApp();
    expect((await post(threadId, { ciphertexts, server_receipt: true })).statusCode).toBe(200);
    expect((await post(threadId, { ciphertexts })).statusCode).toBe(200);
    expect(sends.map((s) => s.noDeliveryReceipt)).toEqual([false, false]);
  });

  test("rejects a server_receipt that is not a boolean with a 400 INVALID_ARGUMENT problem", async () => {
    const { post, sends } = await directApp();
    for (const server_receipt of ["no", { off: true }, [false, true]]) {
      const res = await post(threadId, { ciphertexts, server_receipt });
      expect(res.statusCode).toBe(400);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.json()).toMatchObject({
        reason: "INVALID_ARGUMENT",
        errors: [{ path: "body/server_receipt" }],
      });
    }
    expect(sends).toEqual([]);
  });

  test("accepts and ignores server_receipt on group sends", async () => {
    const { post, groupSends } = await directApp();
    expect((await post(groupId, { body: "AQ==", server_receipt: false })).statusCode).toBe(200);
    expect(groupSends).toHaveLength(1);
    expect(groupSends[0]).not.toHaveProperty("noDeliveryReceipt");
  });
});
