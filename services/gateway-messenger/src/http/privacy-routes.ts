// The caller's "reachable from other messaging services" setting: the opt-in that lets users of
// third-party providers find and message the account (off by default; docs/interop.md).
import type { FastifyInstance } from "fastify";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { problems } from "./schemas.js";

const setting = {
  type: "object",
  required: ["reachable"],
  properties: {
    reachable: {
      type: "boolean",
      description:
        "True: users of third-party providers (app provider:<id>) can look this user up and message it. " +
        "While false the account does not exist for them: lookups find nothing, messages are refused as to an unknown user.",
    },
  },
  additionalProperties: false,
} as const;

/** GET and PUT /v1/me/settings/third_party_reachable. */
export async function privacyRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const path = "/v1/me/settings/third_party_reachable";
  app.get(
    path,
    {
      onRequest: deps.auth.hook(),
      schema: {
        tags: ["settings"],
        summary: "Read whether third-party providers' users can reach the caller",
        security: [{ bearerAuth: [] }],
        response: { 200: setting, ...problems(401, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.directory.getThirdPartyReachable({ accountId: me.accountId }, CALL);
      return { reachable: r.reachable };
    },
  );
  app.put<{ Body: { reachable: boolean } }>(
    path,
    {
      onRequest: deps.auth.hook(),
      schema: {
        tags: ["settings"],
        summary: "Opt in to (or out of) being reachable from third-party providers' users",
        security: [{ bearerAuth: [] }],
        body: setting,
        response: { 200: setting, ...problems(400, 401, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.directory.setThirdPartyReachable(
        { accountId: me.accountId, reachable: request.body.reachable },
        CALL,
      );
      request.log.info({ accountId: me.accountId, reachable: r.reachable }, "third-party reachability set");
      return { reachable: r.reachable };
    },
  );
}
