// Looking up users of any app.
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance } from "fastify";
import { profileToJson } from "../domain/translate.js";
import { recipientFromPath } from "../domain/users.js";
import type { RouteDeps } from "./deps.js";
import { problems } from "./schemas.js";

/** GET /v1/users/{user}. */
export async function userRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  app.get<{ Params: { user: string } }>(
    "/v1/users/:user",
    {
      onRequest: deps.auth.hook(),
      schema: {
        tags: ["users"],
        summary: "Look up a user of any app",
        description:
          "{user} is a numeric id (100004), an account UUID, whatsapp:<phone>, instagram:<username> or " +
          "provider:<id>:<handle>. Returns the user's account_id and current devices.",
        security: [{ bearerAuth: [] }],
        params: {
          type: "object",
          required: ["user"],
          properties: { user: { type: "string", maxLength: 128 } },
        },
        response: { 200: { $ref: "Profile#" }, ...problems(400, 401, 404, 503) },
      },
    },
    async (request) => {
      const found = await deps.directory.profile(recipientFromPath(request.params.user));
      if (found === undefined) throw new AppError(Code.NotFound, "USER_NOT_FOUND", "no such user");
      return profileToJson(found);
    },
  );
}
