import { AppError, Code } from "@switchboard/errors";
import type { Fanout } from "@switchboard/fanout";
import type { ServiceImpl } from "@switchboard/grpc";
import { RequestsPolicy, type App, type RequestService } from "@switchboard/proto";
import {
  deleteGroupInvitations,
  deleteHeldMessages,
  findAccountsByIds,
  findGroup,
  listGroupInvitations,
  listHeldRequests,
  RELATIONSHIP_ACCEPTED,
  RELATIONSHIP_BLOCKED,
  deleteRelationship,
  releaseHeldMessages,
  setRelationship,
  setRequestsPolicy,
  updateGroupMembers,
  type Database,
} from "@switchboard/storage";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/principal.js";
import { encodeMessageEvent } from "../delivery/events.js";
import { queuedMessageToEnvelope } from "../domain/envelope.js";
import type { Franker } from "../domain/franking.js";
import { invalid, requireUuid } from "../domain/limits.js";

/** Most requests (senders plus group invitations) one ListMessageRequests returns. */
export const MAX_LISTED_REQUESTS = 100;
/** Most held envelopes per sender in one ListMessageRequests entry. */
export const MAX_ENVELOPES_PER_REQUEST = 50;

/**
 * The RequestService handlers: list, accept and decline message requests and group invitations,
 * block and unblock, set the requests policy. Relationships belong to the acting device's
 * account. Accepting re-queues the peer's held messages behind everything queued and publishes
 * their wake-ups, so streams deliver them like new messages.
 */
export function createRequestService(deps: {
  db: Kysely<Database>;
  auth: Authenticator;
  fanout: Fanout;
  maxGroupMembers: number;
  log: Logger;
  /** Adds server franking tags to held envelopes, so a request can be reported. */
  franker?: Franker;
}): ServiceImpl<typeof RequestService> {
  const { db, auth } = deps;

  /** The peer account (must exist and differ from `self`). */
  async function requirePeer(selfAccountId: string, peerAccountId: string): Promise<string> {
    const peer = requireUuid(peerAccountId, "peer_account_id");
    if (peer === selfAccountId) throw invalid("SELF_REQUEST", "peer_account_id is the acting account");
    const [found] = await findAccountsByIds(db, [peer]);
    if (!found) throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", `account ${peer} not found`);
    return peer;
  }

  async function acceptInvitation(accountId: string, app: App, groupId: string) {
    const [invitation] = await deleteGroupInvitations(db, accountId, { groupId });
    if (!invitation)
      throw new AppError(Code.NotFound, "INVITATION_NOT_FOUND", `no invitation to group ${groupId}`);
    const g = await findGroup(db, groupId);
    if (!g) throw new AppError(Code.NotFound, "GROUP_NOT_FOUND", `group ${groupId} not found`);
    if (!g.memberAccountIds.includes(accountId) && g.memberAccountIds.length + 1 > deps.maxGroupMembers)
      throw new AppError(Code.FailedPrecondition, "GROUP_FULL", `group ${groupId} is full`);
    await updateGroupMembers(db, groupId, [{ accountId, app }], []);
    await setRelationship(db, {
      owner: accountId,
      peer: invitation.inviterAccountId,
      app,
      state: RELATIONSHIP_ACCEPTED,
    });
  }

  return {
    async listMessageRequests(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const now = Date.now();
      const [held, invitations] = await Promise.all([
        listHeldRequests(db, device, now, MAX_LISTED_REQUESTS, MAX_ENVELOPES_PER_REQUEST),
        listGroupInvitations(db, device.accountId, MAX_LISTED_REQUESTS),
      ]);
      const peers = await findAccountsByIds(db, [
        ...new Set([...held.map((h) => h.peerAccountId), ...invitations.map((i) => i.inviterAccountId)]),
      ]);
      const handleOf = (id: string) => {
        const a = peers.find((p) => p.id === id);
        return a ? { app: a.app as App, value: a.handle, providerId: a.provider_id } : undefined;
      };
      const requests = [
        ...held.map((h) => ({
          peerAccountId: h.peerAccountId,
          peerHandle: handleOf(h.peerAccountId),
          groupId: "",
          envelopes: h.messages.map((m) => queuedMessageToEnvelope(m, deps.franker)),
          messageCount: h.messageCount,
          firstReceivedAtMs: BigInt(h.firstReceivedAtMs),
        })),
        ...invitations.map((i) => ({
          peerAccountId: i.inviterAccountId,
          peerHandle: handleOf(i.inviterAccountId),
          groupId: i.groupId,
          envelopes: [],
          messageCount: 0,
          firstReceivedAtMs: BigInt(i.createdAtMs),
        })),
      ]
        .sort((a, b) => (a.firstReceivedAtMs < b.firstReceivedAtMs ? -1 : 1))
        .slice(0, MAX_LISTED_REQUESTS);
      return { requests };
    },

    async acceptMessageRequest(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      if (req.groupId !== "") {
        await acceptInvitation(device.accountId, device.app, requireUuid(req.groupId, "group_id"));
        ctx.log.info({ accountId: device.accountId }, "group invitation accepted");
        return { released: 0, joinedGroup: true };
      }
      const peer = await requirePeer(device.accountId, req.peerAccountId);
      await setRelationship(db, {
        owner: device.accountId,
        peer,
        app: device.app,
        state: RELATIONSHIP_ACCEPTED,
      });
      const released = await releaseHeldMessages(db, device.accountId, peer);
      if (released.length > 0) {
        try {
          await deps.fanout.publish(
            released.map((m) => ({
              key: { accountId: m.account_id, deviceId: m.device_id },
              payload: encodeMessageEvent(queuedMessageToEnvelope(m, deps.franker)),
            })),
          );
        } catch (err) {
          // Released rows are queued; streams find them on their next read (resync or poll).
          deps.log.warn({ err, rows: released.length }, "wake-up publish failed");
        }
      }
      ctx.log.info({ accountId: device.accountId, released: released.length }, "message request accepted");
      return { released: released.length, joinedGroup: false };
    },

    async declineMessageRequest(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      if (req.groupId !== "") {
        await deleteGroupInvitations(db, device.accountId, { groupId: requireUuid(req.groupId, "group_id") });
        return { deleted: 0 };
      }
      if (req.peerAccountId === "") throw invalid("PEER_REQUIRED", "peer_account_id or group_id is required");
      const peer = requireUuid(req.peerAccountId, "peer_account_id");
      const deleted = await deleteHeldMessages(db, device.accountId, peer);
      ctx.log.info({ accountId: device.accountId, deleted }, "message request declined");
      return { deleted };
    },

    async block(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const peer = await requirePeer(device.accountId, req.peerAccountId);
      await setRelationship(db, {
        owner: device.accountId,
        peer,
        app: device.app,
        state: RELATIONSHIP_BLOCKED,
      });
      const [deleted] = await Promise.all([
        deleteHeldMessages(db, device.accountId, peer),
        deleteGroupInvitations(db, device.accountId, { inviterAccountId: peer }),
      ]);
      ctx.log.info({ accountId: device.accountId, deleted }, "account blocked");
      return { deleted };
    },

    async unblock(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      const peer = requireUuid(req.peerAccountId, "peer_account_id");
      await deleteRelationship(db, device.accountId, peer, RELATIONSHIP_BLOCKED);
      return {};
    },

    async setRequestsPolicy(req, ctx) {
      const principal = await auth.authenticate(ctx.metadata);
      const device = await auth.actingDevice(principal, req.device, "device");
      if (!(req.policy in RequestsPolicy))
        throw invalid("INVALID_POLICY", "policy is not a known RequestsPolicy");
      await setRequestsPolicy(db, device.accountId, req.policy);
      return {};
    },
  };
}
