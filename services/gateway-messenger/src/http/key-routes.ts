// Public keys: the caller's upload and count, and other users' pre-key bundles.
import { AppError, Code } from "@switchboard/errors";
import type { FastifyInstance } from "fastify";
import { bundleToJson, uploadKeysFromJson, type UploadKeysJson } from "../domain/translate.js";
import { recipientFromPath, userFromHandle } from "../domain/users.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { b64, deviceIdSchema, problems } from "./schemas.js";

const countsSchema = {
  type: "object",
  required: ["one_time_pre_key_count", "kyber_pre_key_count"],
  properties: {
    one_time_pre_key_count: { type: "integer" },
    kyber_pre_key_count: {
      type: "integer",
      description: "one-time Kyber keys (the last-resort key is not counted)",
    },
  },
} as const;

/** PUT /v1/me/keys, GET /v1/me/keys/count, GET /v1/users/{user}/keys. */
export async function keyRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const requireAuth = deps.auth.hook();

  app.put<{ Body: UploadKeysJson }>(
    "/v1/me/keys",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["keys"],
        summary: "Upload the calling device's public keys",
        description:
          "Unset members leave stored keys as they are; one-time keys are appended. The first upload needs " +
          "identity_key, signed_pre_key and last_resort_kyber_pre_key. At most 100 one-time keys of each kind per call.",
        security: [{ bearerAuth: [] }],
        body: {
          type: "object",
          properties: {
            identity_key: b64(64, "identity public key (33 bytes)"),
            signed_pre_key: { $ref: "SignedPreKey#" },
            one_time_pre_keys: { type: "array", maxItems: 100, items: { $ref: "PreKey#" } },
            kyber_pre_keys: { type: "array", maxItems: 100, items: { $ref: "SignedPreKey#" } },
            last_resort_kyber_pre_key: { $ref: "SignedPreKey#" },
          },
          additionalProperties: false,
        },
        response: { 200: countsSchema, ...problems(400, 401, 429, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.keys.uploadKeys(uploadKeysFromJson(request.body, me), CALL);
      return { one_time_pre_key_count: r.oneTimePreKeyCount, kyber_pre_key_count: r.kyberPreKeyCount };
    },
  );

  app.get(
    "/v1/me/keys/count",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["keys"],
        summary: "Count the calling device's remaining one-time pre-keys",
        security: [{ bearerAuth: [] }],
        response: { 200: countsSchema, ...problems(401, 503) },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.keys.getPreKeyCount({ device: me }, CALL);
      return { one_time_pre_key_count: r.oneTimePreKeyCount, kyber_pre_key_count: r.kyberPreKeyCount };
    },
  );

  app.get<{ Params: { user: string }; Querystring: { device_id?: number } }>(
    "/v1/users/:user/keys",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["keys"],
        summary: "Fetch a user's pre-key bundles",
        description:
          "One bundle per device (or the one device_id) of a user of any app. Each one-time key is handed out once. " +
          "{user} is a numeric id, an account UUID, whatsapp:<phone>, instagram:<username> or provider:<id>:<handle>.",
        security: [{ bearerAuth: [] }],
        params: {
          type: "object",
          required: ["user"],
          properties: { user: { type: "string", maxLength: 128 } },
        },
        querystring: {
          type: "object",
          properties: {
            device_id: { ...deviceIdSchema, description: "one device; all devices when absent" },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: "object",
            required: ["user", "bundles"],
            properties: {
              user: { $ref: "User#" },
              bundles: { type: "array", items: { $ref: "PreKeyBundle#" } },
            },
          },
          ...problems(400, 401, 404, 429, 503),
        },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const recipient = recipientFromPath(request.params.user);
      const accountId = await deps.directory.resolve(recipient);
      const notFound = () => new AppError(Code.NotFound, "USER_NOT_FOUND", "no such user or device");
      if (accountId === undefined) throw notFound();
      const r = await deps.link.keys.getPreKeyBundles(
        { requester: me, accountId, deviceId: request.query.device_id ?? 0 },
        CALL,
      );
      if (r.result.case !== "bundles") throw notFound();
      const user =
        recipient.kind === "handle"
          ? userFromHandle(accountId, recipient.handle)
          : await deps.directory.userOf(accountId);
      return { user, bundles: r.result.value.bundles.map(bundleToJson) };
    },
  );
}
