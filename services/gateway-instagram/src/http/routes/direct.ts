// Direct threads and thread items.
import { AppError, Code } from "@switchboard/errors";
import type { AccountWithDevices, Group } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { isDirectThreadId, isGroupThreadId, directThreadId } from "../../domain/thread-id.js";
import {
  directSendToRequest,
  groupSendToRequest,
  type DirectCiphertextKind,
  type ItemType,
  type NativeCiphertext,
  type NativeRecipientDevices,
} from "../../domain/translate.js";
import { findRelationshipByThread } from "../../storage/request-repository.js";
import { deleteThread, listInbox, upsertThread } from "../../storage/thread-repository.js";
import type { Principal } from "../auth.js";
import type { RouteContext } from "../context.js";
import { ProblemError } from "../problem.js";
import { bearer, problemResponses, ref, schemaParts, userRefSchema } from "../schemas.js";
import { groupThreadJson, privateThreadJson } from "../views.js";

interface CreateThreadBody {
  recipients: string[];
  thread_type?: "private" | "group";
}

interface SendItemBody {
  client_context: string;
  item_type?: ItemType;
  client_timestamp_ms?: number;
  urgent?: boolean;
  forwarded?: boolean;
  server_receipt?: boolean;
  report_tag?: string;
  ciphertexts?: NativeCiphertext[];
  body?: string;
  expected_recipients?: NativeRecipientDevices[];
}

const threadIdParam = {
  type: "object",
  properties: { thread_id: { type: "string", minLength: 1, maxLength: 64 } },
  required: ["thread_id"],
} as const;

const recipients = (min: number) =>
  ({
    type: "array",
    minItems: min,
    maxItems: 999,
    items: userRefSchema,
    description: "Users of any app, by ref.",
  }) as const;

/** Registers the thread and item routes. */
export async function directRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { db, link, directory, auth, hub, threadPeers } = ctx;

  async function resolveAll(refs: string[]): Promise<AccountWithDevices[]> {
    return Promise.all(refs.map((r) => directory.getByRef(r)));
  }

  /** The peer of one of the user's one-to-one threads (in the inbox, or a request to them). */
  async function peerOf(
    me: Principal,
    threadId: string,
  ): Promise<{ peer: string; pending: boolean } | undefined> {
    if (!isDirectThreadId(threadId)) return undefined;
    const peer = await threadPeers.find(me.accountId, threadId);
    if (peer) return { peer, pending: false };
    const rel = await findRelationshipByThread(db, me.accountId, threadId);
    return rel && { peer: rel.peerAccountId, pending: rel.state === "pending" };
  }

  async function groupThread(me: Principal, g: Group | undefined) {
    if (g === undefined) throw new AppError(Code.Internal, "INVALID_RESPONSE", "no group returned");
    for (const m of g.members) if (m.account) directory.remember(m.account);
    await upsertThread(db, {
      ownerAccountId: me.accountId,
      threadId: g.id,
      threadType: "group",
      peerAccountId: null,
      activityAt: new Date(),
    });
    return groupThreadJson(g);
  }

  app.post<{ Body: CreateThreadBody }>(
    "/v1/direct/threads",
    {
      schema: {
        tags: ["direct"],
        summary: "Opens a thread: one recipient → the one-to-one thread (idempotent); several → a new group",
        description:
          "Opening a thread with someone accepts messages from them (and releases a pending request from them). " +
          'A group with a single other member needs `thread_type: "group"`.',
        security: bearer,
        body: {
          type: "object",
          properties: {
            recipients: recipients(0),
            thread_type: { type: "string", enum: ["private", "group"] },
          },
          required: ["recipients"],
          additionalProperties: false,
        },
        response: { 200: ref("Thread"), ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const type = request.body.thread_type ?? (request.body.recipients.length === 1 ? "private" : "group");
      const users = await resolveAll([...new Set(request.body.recipients)]);
      if (type === "private") {
        const peer = users[0];
        if (users.length !== 1 || peer?.account === undefined)
          throw new AppError(
            Code.InvalidArgument,
            "ONE_RECIPIENT_REQUIRED",
            "a private thread has one recipient",
          );
        const threadId = directThreadId(me.accountId, peer.account.id);
        await upsertThread(db, {
          ownerAccountId: me.accountId,
          threadId,
          threadType: "private",
          peerAccountId: peer.account.id,
          activityAt: new Date(),
        });
        await hub.ensureAccepted(me.accountId, peer.account.id);
        return privateThreadJson(threadId, peer, false);
      }
      const members = users.map((u) => u.account?.id ?? "").filter((id) => id !== me.accountId);
      const r = await link.groups.createGroup({ requester: me, memberAccountIds: members });
      for (const id of members) await hub.ensureAccepted(me.accountId, id);
      return groupThread(me, r.group);
    },
  );

  app.get<{ Params: { thread_id: string } }>(
    "/v1/direct/threads/:thread_id",
    {
      schema: {
        tags: ["direct"],
        summary: "A thread with its users and their devices",
        security: bearer,
        params: threadIdParam,
        response: { 200: ref("Thread"), ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const { thread_id } = request.params;
      if (isGroupThreadId(thread_id)) {
        const r = await link.groups.getGroup({ requester: me, groupId: thread_id });
        return groupThread(me, r.group);
      }
      const found = await peerOf(me, thread_id);
      const peer = found && (await directory.findAccount(found.peer));
      if (found === undefined || peer === undefined)
        throw new AppError(Code.NotFound, "THREAD_NOT_FOUND", `no thread ${thread_id}`);
      return privateThreadJson(thread_id, peer, found.pending);
    },
  );

  for (const op of ["add_users", "remove_users"] as const) {
    app.post<{ Params: { thread_id: string }; Body: { recipients: string[] } }>(
      `/v1/direct/threads/:thread_id/${op}`,
      {
        schema: {
          tags: ["direct"],
          summary:
            op === "add_users"
              ? "Adds users to a group thread (members only)"
              : "Removes users from a group thread (yourself: leave, which also drops it from your inbox; the creator: anyone)",
          security: bearer,
          params: threadIdParam,
          body: {
            type: "object",
            properties: { recipients: recipients(1) },
            required: ["recipients"],
            additionalProperties: false,
          },
          response: { 200: ref("Thread"), ...problemResponses },
        },
      },
      async (request) => {
        const me = await auth.authenticate(request);
        const groupId = request.params.thread_id;
        if (!isGroupThreadId(groupId))
          throw new AppError(
            Code.InvalidArgument,
            "NOT_A_GROUP_THREAD",
            "only group threads have members to change",
          );
        const accountIds = (await resolveAll(request.body.recipients)).map((u) => u.account?.id ?? "");
        if (op === "add_users") {
          const r = await link.groups.addGroupMembers({ requester: me, groupId, accountIds });
          for (const id of accountIds) await hub.ensureAccepted(me.accountId, id);
          return groupThread(me, r.group);
        }
        const r = await link.groups.removeGroupMembers({ requester: me, groupId, accountIds });
        if (r.group === undefined) throw new AppError(Code.Internal, "INVALID_RESPONSE", "no group returned");
        if (accountIds.includes(me.accountId)) await deleteThread(db, me.accountId, groupId);
        return groupThreadJson(r.group);
      },
    );
  }

  app.get<{ Querystring: { limit?: number; before_ms?: number } }>(
    "/v1/direct/inbox",
    {
      schema: {
        tags: ["direct"],
        summary: "Your threads, most recently active first (message requests are under /v1/direct/pending)",
        security: bearer,
        querystring: {
          type: "object",
          properties: {
            limit: { type: "integer", minimum: 1, maximum: 200, default: 50 },
            before_ms: { ...schemaParts.millis, description: "Page: threads active before this time." },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              threads: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    thread_id: { type: "string" },
                    thread_type: { type: "string", enum: ["private", "group"] },
                    peer: {
                      type: "object",
                      properties: { account_id: schemaParts.uuid, ref: { type: "string" } },
                      required: ["account_id"],
                    },
                    last_activity_at_ms: schemaParts.millis,
                  },
                  required: ["thread_id", "thread_type", "last_activity_at_ms"],
                },
              },
              next_before_ms: schemaParts.millis,
            },
            required: ["threads"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const limit = request.query.limit ?? 50;
      const before = request.query.before_ms === undefined ? undefined : new Date(request.query.before_ms);
      const rows = await listInbox(db, me.accountId, before === undefined ? { limit } : { limit, before });
      const threads = await Promise.all(
        rows.map(async (t) => {
          const peer = t.peer_account_id;
          const peerRef = peer === null ? undefined : await directory.refOf(peer).catch(() => undefined);
          return {
            thread_id: t.thread_id,
            thread_type: t.thread_type,
            ...(peer === null ? {} : { peer: { account_id: peer, ...(peerRef ? { ref: peerRef } : {}) } }),
            last_activity_at_ms: new Date(t.last_activity_at).getTime(),
          };
        }),
      );
      const last = threads.at(-1);
      return {
        threads,
        ...(threads.length === limit && last ? { next_before_ms: last.last_activity_at_ms } : {}),
      };
    },
  );

  app.post<{ Params: { thread_id: string }; Body: SendItemBody }>(
    "/v1/direct/threads/:thread_id/items",
    {
      schema: {
        tags: ["direct"],
        summary: "Sends an end-to-end-encrypted item to a thread",
        description:
          "One-to-one threads take `ciphertexts`, one per current device of the recipient (for a thread with " +
          "yourself: your other devices); group threads take one sender-key `body`. The server never sees " +
          "plaintext: what the item is (text, media, reaction, read receipt) is inside the ciphertext; " +
          '`item_type: "typing"` is delivered only to devices connected now. Idempotent on client_context. ' +
          "If your device list is out of date the answer is 409 DEVICES_CHANGED with missing_devices, " +
          "extra_devices and stale_devices (per account in `accounts` for groups); nothing is sent.",
        security: bearer,
        params: threadIdParam,
        body: {
          type: "object",
          properties: {
            client_context: { type: "string", minLength: 1, maxLength: 64 },
            item_type: { type: "string", enum: ["message", "typing"], default: "message" },
            client_timestamp_ms: schemaParts.millis,
            urgent: { type: "boolean", description: "Wake the recipient (default: true for messages)." },
            forwarded: { type: "boolean", default: false },
            server_receipt: {
              type: "boolean",
              default: true,
              description:
                "One-to-one threads: false asks for no `receipt` event when a recipient device acknowledges " +
                "the item (for clients that send their own end-to-end receipts). Ignored for groups, which " +
                "get no receipts.",
            },
            report_tag: schemaParts.base64,
            ciphertexts: {
              type: "array",
              minItems: 1,
              maxItems: 100,
              items: {
                type: "object",
                properties: {
                  device_id: schemaParts.deviceId,
                  registration_id: { type: "integer", minimum: 0, maximum: 16380 },
                  type: { type: "string", enum: ["ciphertext", "prekey", "sealed_sender", "plaintext"] },
                  body: schemaParts.base64,
                },
                required: ["device_id", "registration_id", "type", "body"],
                additionalProperties: false,
              },
            },
            body: schemaParts.base64,
            expected_recipients: {
              type: "array",
              items: {
                type: "object",
                properties: {
                  account_id: schemaParts.uuid,
                  devices: {
                    type: "array",
                    items: {
                      type: "object",
                      properties: { device_id: schemaParts.deviceId, registration_id: { type: "integer" } },
                      required: ["device_id", "registration_id"],
                    },
                  },
                },
                required: ["account_id", "devices"],
              },
            },
          },
          required: ["client_context"],
          additionalProperties: false,
        },
        response: {
          200: {
            type: "object",
            properties: {
              server_id: schemaParts.uuid,
              thread_id: { type: "string" },
              client_context: { type: "string" },
              server_timestamp_ms: schemaParts.millis,
              duplicate: { type: "boolean", description: "True when this answers a retry." },
            },
            required: ["server_id", "thread_id", "client_context", "server_timestamp_ms", "duplicate"],
          },
          409: {
            ...ref("Problem"),
            description:
              "DEVICES_CHANGED: { missing_devices, extra_devices, stale_devices } or { accounts: [...] }",
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const threadId = request.params.thread_id;
      const b = request.body;
      const itemType = b.item_type ?? "message";
      const common = {
        client_context: b.client_context,
        item_type: itemType,
        client_timestamp_ms: b.client_timestamp_ms ?? Date.now(),
        urgent: b.urgent ?? itemType === "message",
        forwarded: b.forwarded ?? false,
        ...(b.report_tag ? { report_tag: b.report_tag } : {}),
      };
      const sent = (s: { messageId: string; serverTimestampMs: bigint; duplicate: boolean }) => ({
        server_id: s.messageId,
        thread_id: threadId,
        client_context: b.client_context,
        server_timestamp_ms: Number(s.serverTimestampMs),
        duplicate: s.duplicate,
      });

      if (isGroupThreadId(threadId)) {
        if (b.body === undefined || b.ciphertexts !== undefined)
          throw new AppError(
            Code.InvalidArgument,
            "GROUP_BODY_REQUIRED",
            "group threads take one sender-key body",
          );
        const item = {
          ...common,
          body: b.body,
          ...(b.expected_recipients ? { expected_recipients: b.expected_recipients } : {}),
        };
        const r = await link.sendGroup(groupSendToRequest(item, me, threadId));
        switch (r.result.case) {
          case "sent":
            if (itemType === "message") {
              // Posting in a group accepts its members (their items to you are no longer held).
              await hub.ensureGroupAccepted(me, threadId);
              await hub.touchThread(me.accountId, threadId, "group", null);
            }
            return sent(r.result.value);
          case "mismatchedDevices": {
            const accounts = new Map<string, { missing: number[]; extra: number[]; stale: number[] }>();
            const entry = (id: string) => {
              const e = accounts.get(id) ?? { missing: [], extra: [], stale: [] };
              accounts.set(id, e);
              return e;
            };
            for (const m of r.result.value.mismatched) {
              entry(m.accountId).missing.push(...m.missingDevices);
              entry(m.accountId).extra.push(...m.extraDevices);
            }
            for (const s of r.result.value.stale) entry(s.accountId).stale.push(...s.staleDevices);
            throw new ProblemError(Code.Aborted, "DEVICES_CHANGED", "group members' devices changed", {
              accounts: [...accounts].map(([account_id, e]) => ({
                account_id,
                missing_devices: e.missing,
                extra_devices: e.extra,
                stale_devices: e.stale,
              })),
            });
          }
          case "notAMember":
            throw new AppError(Code.PermissionDenied, "NOT_A_MEMBER", "you are not a member of this group");
          default:
            throw new AppError(Code.Internal, "INVALID_RESPONSE", "no send result");
        }
      }

      const found = await peerOf(me, threadId);
      if (found === undefined) throw new AppError(Code.NotFound, "THREAD_NOT_FOUND", `no thread ${threadId}`);
      if (b.ciphertexts === undefined || b.body !== undefined)
        throw new AppError(
          Code.InvalidArgument,
          "CIPHERTEXTS_REQUIRED",
          "one-to-one threads take per-device ciphertexts",
        );
      // Replying (not just typing) accepts the peer, releasing a pending request from them.
      if (itemType === "message") await hub.ensureAccepted(me.accountId, found.peer);
      const item = {
        ...common,
        ciphertexts: b.ciphertexts.map((c) => ({ ...c, type: c.type satisfies DirectCiphertextKind })),
        server_receipt: b.server_receipt ?? true,
      };
      const r = await link.send(directSendToRequest(item, me, found.peer));
      switch (r.result.case) {
        case "sent":
          if (itemType === "message" && found.peer !== me.accountId)
            await hub.touchThread(me.accountId, threadId, "private", found.peer);
          return sent(r.result.value);
        case "mismatchedDevices":
          throw new ProblemError(Code.Aborted, "DEVICES_CHANGED", "the recipient's devices changed", {
            account_id: found.peer,
            missing_devices: r.result.value.missingDevices,
            extra_devices: r.result.value.extraDevices,
            stale_devices: [],
          });
        case "staleDevices":
          throw new ProblemError(
            Code.Aborted,
            "DEVICES_CHANGED",
            "some of the recipient's devices were reinstalled",
            {
              account_id: found.peer,
              missing_devices: [],
              extra_devices: [],
              stale_devices: r.result.value.staleDevices,
            },
          );
        case "recipientNotFound":
          throw new AppError(Code.NotFound, "RECIPIENT_NOT_FOUND", "the recipient no longer exists");
        default:
          throw new AppError(Code.Internal, "INVALID_RESPONSE", "no send result");
      }
    },
  );
}
