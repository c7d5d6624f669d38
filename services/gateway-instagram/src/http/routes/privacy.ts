// Your "reachable from other messaging services" setting: the opt-in that lets users of
// third-party providers (refs `<provider>:<handle>`) find and message you. Off by default;
// while off they get 404 for your username. See docs/interop.md.
import type { FastifyInstance } from "fastify";
import type { RouteContext } from "../context.js";
import { bearer, problemResponses } from "../schemas.js";

const setting = {
  type: "object",
  properties: {
    third_party_reachable: {
      type: "boolean",
      description: "True: users of third-party providers can look you up and message you.",
    },
  },
  required: ["third_party_reachable"],
  additionalProperties: false,
} as const;

/** Registers GET and PUT /v1/me/settings/interop. */
export async function privacyRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { link, auth } = ctx;
  const path = "/v1/me/settings/interop";

  app.get(
    path,
    {
      schema: {
        tags: ["settings"],
        summary: "Reads whether users of third-party providers can reach you",
        security: bearer,
        response: { 200: setting, ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const r = await link.directory.getThirdPartyReachable({ accountId: me.accountId });
      return { third_party_reachable: r.reachable };
    },
  );

  app.put<{ Body: { third_party_reachable: boolean } }>(
    path,
    {
      schema: {
        tags: ["settings"],
        summary: "Opts in to (or out of) being reachable from users of third-party providers",
        security: bearer,
        body: setting,
        response: { 200: setting, ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const r = await link.directory.setThirdPartyReachable({
        accountId: me.accountId,
        reachable: request.body.third_party_reachable,
      });
      request.log.info({ accountId: me.accountId, reachable: r.reachable }, "third-party reachability set");
      return { third_party_reachable: r.reachable };
    },
  );
}
