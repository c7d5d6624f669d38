// Live delivery: each SSE connection subscribes its device through the delivery link; envelopes
// are streamed as thread items, except items from peers the user has not accepted, which are held
// as message requests (stored here, acknowledged to delivery) until the user accepts (then
// streamed to each device until it acks) or declines (then deleted).
import type { ServerResponse } from "node:http";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DeliveryLink } from "@switchboard/delivery-link";
import { isAppError } from "@switchboard/errors";
import { createWriteCoalescer } from "@switchboard/gateway-http";
import { EnvelopeSchema, EnvelopeType, type Envelope } from "@switchboard/proto";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Directory } from "../directory.js";
import { directThreadId } from "../domain/thread-id.js";
import { envelopeToItem } from "../domain/translate.js";
import {
  acceptPeer,
  deleteReleased,
  findRelationshipState,
  holdEnvelope,
  listDevicesWithUndelivered,
  listReleased,
  markDelivered,
} from "../storage/request-repository.js";
import type { IgDatabase } from "../storage/schema.js";
import { listGroupThreadIds, upsertThread } from "../storage/thread-repository.js";
import { SseConnection, type DeviceKey } from "./sse-connection.js";

/** Options of {@link createEventHub}. */
export interface EventHubOptions {
  db: Kysely<IgDatabase>;
  link: DeliveryLink;
  directory: Directory;
  log: Logger;
  /** Comment lines keep idle connections (and proxies) alive this often. Default 15 s. */
  keepAliveMs?: number;
  /** How often to look for requests accepted through another instance. Default 5 s. */
  releasePollMs?: number;
}

/** The live side of the gateway. */
export interface EventHub {
  /** Streams a device's events to `res` (already hijacked), displacing an older connection of it. */
  open(device: DeviceKey, res: ServerResponse, opts: { window?: number }): SseConnection;
  /** Acknowledges delivered items (request items here, the rest at the delivery service). */
  ack(device: DeviceKey, ids: string[]): Promise<void>;
  /** Marks a peer accepted by `owner`, releasing held items to the owner's devices. */
  accept(ownerAccountId: string, peerAccountId: string): Promise<void>;
  /** Accepts a peer unless already known to be accepted (a user messaging or adding a peer). */
  ensureAccepted(ownerAccountId: string, peerAccountId: string): Promise<void>;
  /** Moves a thread to the top of the owner's inbox (rate-limited per thread; failures are logged). */
  touchThread(
    ownerAccountId: string,
    threadId: string,
    type: "private" | "group",
    peer: string | null,
  ): Promise<void>;
  /** Accepts every member of a group the device's user posts in (once per group and process). */
  ensureGroupAccepted(device: DeviceKey, groupId: string): Promise<void>;
  /** Ends a device's connection on this instance (device removed). */
  disconnect(device: DeviceKey, reason: string): void;
  /** Live connections on this instance. */
  readonly connections: number;
  /** Ends every connection (clients reconnect elsewhere). */
  close(): Promise<void>;
}

const MAX_CACHED = 500_000;
const THREAD_TOUCH_INTERVAL_MS = 60_000;
const RELEASE_PAGE = 500;
const GROUP_MEMBERS_TTL_MS = 30_000;
const MAX_CACHED_GROUPS = 10_000;
/** Groups (most recent first) searched for a shared group with a sender not yet accepted. */
const MAX_GROUPS_CHECKED = 50;

/** A bounded insertion-ordered cache. */
function boundedSet() {
  const m = new Map<string, number>();
  return {
    get: (k: string) => m.get(k),
    set(k: string, v: number) {
      if (!m.has(k) && m.size >= MAX_CACHED) {
        const oldest = m.keys().next().value;
        if (oldest !== undefined) m.delete(oldest);
      }
      m.set(k, v);
    },
  };
}

/** Creates the hub and starts its keep-alive and release timers (stopped by close()). */
export function createEventHub(opts: EventHubOptions): EventHub {
  const { db, link, directory } = opts;
  const log = opts.log.child({ component: "event-hub" });
  const conns = new Map<string, SseConnection>();
  /** Each connection's events of one tick go out in one write (a message and its receipt, say). */
  const holdWrites = createWriteCoalescer();
  /** `owner/peer` pairs known accepted (acceptance is never revoked). */
  const accepted = boundedSet();
  /** `owner/thread` → when the inbox row was last touched. */
  const touched = boundedSet();
  /** `owner/group` pairs whose members the owner has accepted in this process. */
  const groupsAccepted = boundedSet();
  /** Group id → its member account ids, briefly cached. */
  const groupMembers = new Map<string, { members: Set<string>; at: number }>();
  const keyOf = (d: DeviceKey) => `${d.accountId}/${d.deviceId}`;

  const keepAlive = setInterval(() => {
    for (const c of conns.values()) c.comment("keep-alive");
  }, opts.keepAliveMs ?? 15_000);
  keepAlive.unref();

  let polling = false;
  const releasePoll = setInterval(() => {
    if (conns.size === 0 || polling) return;
    polling = true;
    listDevicesWithUndelivered(db, 10_000)
      .then((devices) => {
        for (const d of devices) {
          const c = conns.get(keyOf(d));
          if (c) schedule(c, () => pushReleased(c, true));
        }
      })
      .catch((err: unknown) => log.warn({ err }, "release poll failed"))
      .finally(() => (polling = false));
  }, opts.releasePollMs ?? 5_000);
  releasePoll.unref();

  /** Runs a task in the connection's order; a failure ends the stream so the client re-drains. */
  function schedule(c: SseConnection, task: () => Promise<void>) {
    c.enqueue(task, (err) => {
      log.warn({ err, accountId: c.device.accountId, deviceId: c.device.deviceId }, "event stream failed");
      c.end({
        event: "error",
        data: { reason: isAppError(err) ? err.reason : "INTERNAL", detail: "the stream failed; reconnect" },
      });
      detach(c);
    });
  }

  async function isAccepted(owner: string, peer: string): Promise<boolean> {
    const k = `${owner}/${peer}`;
    if (accepted.get(k) !== undefined) return true;
    if ((await findRelationshipState(db, owner, peer)) !== "accepted") return false;
    accepted.set(k, 1);
    return true;
  }

  async function ackDelivery(c: SseConnection, ids: string[]) {
    if (c.sub && c.subActive) await c.sub.ack(ids);
    else await link.messages.ackMessages({ device: c.device, messageIds: ids });
  }

  async function touchThread(
    owner: string,
    threadId: string,
    type: "private" | "group",
    peer: string | null,
  ) {
    const k = `${owner}/${threadId}`;
    const now = Date.now();
    if (now - (touched.get(k) ?? 0) < THREAD_TOUCH_INTERVAL_MS) return;
    try {
      await upsertThread(db, {
        ownerAccountId: owner,
        threadId,
        threadType: type,
        peerAccountId: peer,
        activityAt: new Date(now),
      });
      touched.set(k, now);
    } catch (err) {
      // The inbox listing is secondary: a failed update must not hold up delivery.
      log.warn({ err }, "inbox update failed");
    }
  }

  /** Streams an envelope to the device as an item (or a receipt). */
  async function deliver(c: SseConnection, env: Envelope) {
    const owner = c.device.accountId;
    const source = env.source?.accountId;
    if (source !== undefined && source !== "") {
      await directory.refOf(source).catch((err: unknown) => log.debug({ err }, "sender ref lookup failed"));
    }
    const item = envelopeToItem(env, (accountId) => directory.cachedRef(accountId));
    if (env.type === EnvelopeType.SERVER_DELIVERY_RECEIPT) {
      c.send("receipt", item, env.id);
      return;
    }
    if (!env.ephemeral && item.thread_id !== null && source !== owner) {
      await touchThread(
        owner,
        item.thread_id,
        item.thread_type,
        item.thread_type === "group" ? null : (source ?? null),
      );
    }
    c.send("item", item, env.id);
  }

  async function membersOf(device: DeviceKey, groupId: string): Promise<Set<string>> {
    const hit = groupMembers.get(groupId);
    if (hit && Date.now() - hit.at < GROUP_MEMBERS_TTL_MS) return hit.members;
    const r = await link.groups.getGroup({ requester: device, groupId });
    const members = new Set((r.group?.members ?? []).map((m) => m.account?.id ?? ""));
    if (groupMembers.size >= MAX_CACHED_GROUPS) groupMembers.clear();
    groupMembers.set(groupId, { members, at: Date.now() });
    return members;
  }

  /** Accepts every member of a group (the device's user takes part in it). */
  async function ensureGroupAccepted(device: DeviceKey, groupId: string) {
    const k = `${device.accountId}/${groupId}`;
    if (groupsAccepted.get(k) !== undefined) return;
    groupMembers.delete(groupId);
    for (const member of await membersOf(device, groupId)) await ensureAccepted(device.accountId, member);
    groupsAccepted.set(k, 1);
  }

  /** True when `peer` is a member of one of the groups in the device user's inbox. */
  async function sharesAcceptedGroup(device: DeviceKey, peer: string): Promise<boolean> {
    for (const groupId of await listGroupThreadIds(db, device.accountId, MAX_GROUPS_CHECKED)) {
      try {
        if ((await membersOf(device, groupId)).has(peer)) return true;
      } catch (err) {
        // Typically: no longer a member of that group.
        log.debug({ err, groupId }, "group lookup failed");
      }
    }
    return false;
  }

  /**
   * Routes one envelope from the delivery service: stream it, or hold it as a request. Group items
   * count too: a member's sender key arrives one-to-one, so holding only that would leave their
   * group items undecryptable; held and released together, they stay in order. A group becomes
   * accepted (all its members) when a member the user accepted posts in it.
   */
  async function route(c: SseConnection, env: Envelope) {
    const owner = c.device.accountId;
    const peer = env.source?.accountId ?? "";
    const live =
      env.type === EnvelopeType.SERVER_DELIVERY_RECEIPT ||
      peer === "" ||
      peer === owner ||
      (await isAccepted(owner, peer));
    if (live) {
      if (
        env.groupId !== "" &&
        peer !== owner &&
        groupsAccepted.get(`${owner}/${env.groupId}`) === undefined
      ) {
        await ensureGroupAccepted(c.device, env.groupId).catch((err: unknown) =>
          log.warn({ err, groupId: env.groupId }, "accepting group members failed"),
        );
      }
      return deliver(c, env);
    }
    if (await sharesAcceptedGroup(c.device, peer)) {
      await accept(owner, peer);
      // Anything held from this peer is older: stream it first.
      await pushReleased(c, true);
      return deliver(c, env);
    }
    if (env.ephemeral) {
      // Typing from someone not accepted is dropped, never stored.
      await ackDelivery(c, [env.id]);
      return;
    }
    const outcome = await holdEnvelope(db, {
      ownerAccountId: owner,
      deviceId: c.device.deviceId,
      peerAccountId: peer,
      threadId: directThreadId(owner, peer),
      serverId: env.id,
      sequence: Number(env.sequence),
      envelope: toBinary(EnvelopeSchema, env),
    });
    if (outcome === "accepted") {
      accepted.set(`${owner}/${peer}`, 1);
      return deliver(c, env);
    }
    await ackDelivery(c, [env.id]);
  }

  /** Streams a device's released request items in queue order. */
  async function pushReleased(c: SseConnection, undeliveredOnly: boolean) {
    let after = -1;
    for (;;) {
      const rows = await listReleased(db, c.device.accountId, c.device.deviceId, {
        undeliveredOnly,
        afterSequence: after,
        limit: RELEASE_PAGE,
      });
      for (const row of rows) {
        const env = fromBinary(EnvelopeSchema, new Uint8Array(row.envelope));
        c.releasedIds.add(row.server_id);
        await deliver(c, env);
        after = Number(row.sequence);
      }
      await markDelivered(
        db,
        c.device.accountId,
        c.device.deviceId,
        rows.map((r) => r.server_id),
      );
      if (rows.length < RELEASE_PAGE) return;
    }
  }

  function detach(c: SseConnection) {
    if (conns.get(c.key) === c) conns.delete(c.key);
    c.end();
    c.subActive = false;
    void c.sub?.close();
  }

  async function accept(owner: string, peer: string) {
    const threadId = directThreadId(owner, peer);
    const devices = await acceptPeer(db, owner, peer, threadId);
    accepted.set(`${owner}/${peer}`, 1);
    await upsertThread(db, {
      ownerAccountId: owner,
      threadId,
      threadType: "private",
      peerAccountId: peer,
      activityAt: new Date(),
    });
    for (const deviceId of devices) {
      const c = conns.get(keyOf({ accountId: owner, deviceId }));
      if (c) schedule(c, () => pushReleased(c, true));
    }
  }

  async function ensureAccepted(owner: string, peer: string) {
    if (owner === peer || accepted.get(`${owner}/${peer}`) !== undefined) return;
    if (await isAccepted(owner, peer)) return;
    await accept(owner, peer);
  }

  return {
    open(device, res, subOpts) {
      const key = keyOf(device);
      const previous = conns.get(key);
      if (previous) {
        // Unsubscribe the old one first: the link then sends unsubscribe before the new subscribe.
        previous.end({ event: "displaced", data: {} });
        detach(previous);
      }
      const c = new SseConnection(
        { accountId: device.accountId, deviceId: device.deviceId },
        res,
        holdWrites,
      );
      conns.set(key, c);
      c.open();
      res.on("close", () => detach(c));
      schedule(c, () => pushReleased(c, false));
      c.subActive = true;
      c.sub = link.subscribe(
        c.device,
        {
          onEnvelope: (env) => schedule(c, () => route(c, env)),
          onQueueEmpty: () => schedule(c, async () => c.send("queue_empty", {})),
          onDisplaced: () => {
            c.subActive = false;
            c.end({ event: "displaced", data: {} });
            detach(c);
          },
          onError: (err) => {
            c.subActive = false;
            log.warn(
              { reason: err.reason, accountId: device.accountId, deviceId: device.deviceId },
              "subscription failed",
            );
            c.end({ event: "error", data: { reason: err.reason, detail: err.message } });
            detach(c);
          },
        },
        subOpts.window === undefined ? undefined : { window: subOpts.window },
      );
      return c;
    },

    async ack(device, ids) {
      if (ids.length === 0) return;
      const c = conns.get(keyOf(device));
      const candidates = c ? ids.filter((id) => c.releasedIds.has(id)) : ids;
      const removed = new Set(await deleteReleased(db, device.accountId, device.deviceId, candidates));
      for (const id of candidates) c?.releasedIds.delete(id);
      const rest = removed.size === 0 ? ids : ids.filter((id) => !removed.has(id));
      if (rest.length === 0) return;
      if (c?.sub && c.subActive) await c.sub.ack(rest);
      else await link.messages.ackMessages({ device, messageIds: rest });
    },

    accept,
    touchThread,

    ensureAccepted,

    ensureGroupAccepted,

    disconnect(device, reason) {
      const c = conns.get(keyOf(device));
      if (!c) return;
      c.end({ event: "error", data: { reason, detail: "the device was removed" } });
      detach(c);
    },

    get connections() {
      return conns.size;
    },

    async close() {
      clearInterval(keepAlive);
      clearInterval(releasePoll);
      const all = [...conns.values()];
      for (const c of all) detach(c);
      await Promise.all(all.flatMap((c) => (c.sub ? [c.sub.close()] : [])));
    },
  };
}
