// WhatsAppService's privacy settings: "reachable from other messaging services" (the opt-in to
// third-party providers, docs/interop.md), stored by the delivery service.
import type { DeliveryLink } from "@switchboard/delivery-link";
import type { CallContext, ServiceImpl } from "@switchboard/grpc";
import type { whatsapp } from "@switchboard/proto";
import type { Kysely } from "kysely";
import { authenticateDevice } from "../auth/device-auth.js";
import type { WaDatabase } from "../storage/schema.js";

type Service = typeof whatsapp.WhatsAppService;

/** The SetThirdPartyReachable / GetThirdPartyReachable handlers, acting for the caller's account. */
export function createPrivacyHandlers(deps: {
  db: Kysely<WaDatabase>;
  link: DeliveryLink;
}): Pick<ServiceImpl<Service>, "setThirdPartyReachable" | "getThirdPartyReachable"> {
  const auth = (ctx: CallContext) => authenticateDevice(deps.db, ctx.metadata);
  return {
    async setThirdPartyReachable(req, ctx) {
      const device = await auth(ctx);
      const r = await deps.link.directory.setThirdPartyReachable({
        accountId: device.accountId,
        reachable: req.reachable,
      });
      ctx.log.info({ accountId: device.accountId, reachable: r.reachable }, "third-party reachability set");
      return { reachable: r.reachable };
    },
    async getThirdPartyReachable(_req, ctx) {
      const device = await auth(ctx);
      const r = await deps.link.directory.getThirdPartyReachable({ accountId: device.accountId });
      return { reachable: r.reachable };
    },
  };
}
