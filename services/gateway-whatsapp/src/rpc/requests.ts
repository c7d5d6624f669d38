// WhatsAppService's message requests: list, accept, decline, block and unblock, and the requests
// policy, acting for the caller's device at the delivery service (RequestService).
import type { DeliveryLink } from "@switchboard/delivery-link";
import { AppError, Code } from "@switchboard/errors";
import type { CallContext, ServiceImpl } from "@switchboard/grpc";
import { RequestsPolicy, type whatsapp } from "@switchboard/proto";
import type { Kysely } from "kysely";
import { authenticateDevice } from "../auth/device-auth.js";
import type { Directory } from "../directory.js";
import { formatGroupJid, formatUserJid, parseGroupJid, parseUserJid } from "../domain/jid.js";
import { envelopeToChatFrame } from "../domain/translate.js";
import type { WaDatabase } from "../storage/schema.js";

type Service = typeof whatsapp.WhatsAppService;
type Handlers = Pick<
  ServiceImpl<Service>,
  | "listMessageRequests"
  | "acceptMessageRequest"
  | "declineMessageRequest"
  | "blockUser"
  | "unblockUser"
  | "setRequestsPolicy"
>;

/** A user JID or a group JID, resolved to what RequestService takes. */
type Target = { peerAccountId: string; groupId: string };

/** The request handlers. JIDs of unknown users fail NOT_FOUND (USER_NOT_FOUND). */
export function createRequestHandlers(deps: {
  db: Kysely<WaDatabase>;
  link: DeliveryLink;
  directory: Directory;
}): Handlers {
  const { link, directory } = deps;
  const auth = async (ctx: CallContext) => {
    const d = await authenticateDevice(deps.db, ctx.metadata);
    return { accountId: d.accountId, deviceId: d.deviceId };
  };

  async function userAccountId(jid: string): Promise<string> {
    const parsed = parseUserJid(jid);
    if (parsed.device !== undefined)
      throw new AppError(Code.InvalidArgument, "USER_JID_REQUIRED", `${jid} is a device JID; name the user`);
    const id = await directory.findAccountId(parsed.handle);
    if (id === undefined) throw new AppError(Code.NotFound, "USER_NOT_FOUND", `no user ${jid.slice(0, 128)}`);
    return id;
  }

  async function targetOf(jid: string): Promise<Target> {
    if (jid.endsWith("@g.us")) return { peerAccountId: "", groupId: parseGroupJid(jid) };
    return { peerAccountId: await userAccountId(jid), groupId: "" };
  }

  return {
    async listMessageRequests(_req, ctx) {
      const device = await auth(ctx);
      const r = await link.requests.listMessageRequests({ device });
      return {
        requests: r.requests.map((q) => {
          const handle = q.peerHandle;
          return {
            from: handle ? formatUserJid(handle) : "",
            group: q.groupId === "" ? "" : formatGroupJid(q.groupId),
            messages: q.envelopes.flatMap((e) => {
              const frame = envelopeToChatFrame(e, handle);
              return frame.case === "message" ? [frame.value] : [];
            }),
            messageCount: q.messageCount,
            t: q.firstReceivedAtMs,
          };
        }),
      };
    },
    async acceptMessageRequest(req, ctx) {
      const device = await auth(ctx);
      const r = await link.requests.acceptMessageRequest({ device, ...(await targetOf(req.jid)) });
      return { released: r.released };
    },
    async declineMessageRequest(req, ctx) {
      const device = await auth(ctx);
      const r = await link.requests.declineMessageRequest({ device, ...(await targetOf(req.jid)) });
      return { deleted: r.deleted };
    },
    async blockUser(req, ctx) {
      const device = await auth(ctx);
      await link.requests.block({ device, peerAccountId: await userAccountId(req.jid) });
      return {};
    },
    async unblockUser(req, ctx) {
      const device = await auth(ctx);
      await link.requests.unblock({ device, peerAccountId: await userAccountId(req.jid) });
      return {};
    },
    async setRequestsPolicy(req, ctx) {
      const device = await auth(ctx);
      await link.requests.setRequestsPolicy({
        device,
        policy: req.hold ? RequestsPolicy.HOLD : RequestsPolicy.DELIVER_MARKED,
      });
      return {};
    },
  };
}
