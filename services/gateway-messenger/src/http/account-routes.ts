// Signup, further devices, the caller's own account.
import { AppError, Code, isAppError } from "@switchboard/errors";
import { App } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { generateDevicePassword } from "../domain/tokens.js";
import { deviceToJson, profileToJson } from "../domain/translate.js";
import { userFromHandle } from "../domain/users.js";
import { nextUserId } from "../storage/token-repository.js";
import { principalOf } from "./auth.js";
import { CALL, type RouteDeps } from "./deps.js";
import { deviceIdSchema, problems, registrationIdSchema } from "./schemas.js";

const SIGNUP_ATTEMPTS = 5;

const registrationBody = {
  type: "object",
  required: ["registration_id"],
  properties: {
    registration_id: { ...registrationIdSchema, description: "the device's Signal registration id" },
    device_name: {
      type: "string",
      maxLength: 64,
      description: "display name (visible to the server: keep it bland)",
    },
    minor: {
      type: "boolean",
      description:
        "signup only: the app's own age signal says the user is a minor. Minors receive no message and no group " +
        "invitation from adults they have not accepted (docs/safety.md); never shown to other users.",
    },
  },
  additionalProperties: false,
} as const;

const credentialResponse = {
  type: "object",
  required: ["user", "device", "access_token", "token_type"],
  properties: {
    user: { $ref: "User#" },
    device: { $ref: "Device#" },
    access_token: {
      type: "string",
      description: "bearer token of this device; shown once, stored only as a digest",
    },
    token_type: { const: "bearer" },
  },
} as const;

interface RegistrationBody {
  registration_id: number;
  device_name?: string;
  minor?: boolean;
}

/** POST /v1/signup, POST /v1/devices, GET /v1/me, DELETE /v1/me/devices/{device_id}. */
export async function accountRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const requireAuth = deps.auth.hook();

  app.post<{ Body: RegistrationBody }>(
    "/v1/signup",
    {
      schema: {
        tags: ["accounts"],
        summary: "Create a user",
        description:
          "Creates a Messenger-style user with its primary device (device 1). The gateway assigns the numeric user id " +
          "and returns the device's first access token.",
        body: registrationBody,
        response: { 201: credentialResponse, ...problems(400, 429, 503) },
      },
    },
    async (request, reply) => {
      for (let attempt = 1; ; attempt++) {
        const userId = await nextUserId(deps.db);
        const handle = { app: App.MESSENGER, providerId: "", value: userId };
        try {
          const r = await deps.link.directory.registerAccount(
            {
              handle,
              registrationId: request.body.registration_id,
              password: generateDevicePassword(),
              deviceName: request.body.device_name ?? "",
              minor: request.body.minor === true,
            },
            CALL,
          );
          const accountId = r.account?.id ?? "";
          const device = r.device;
          if (accountId === "" || device === undefined)
            throw new AppError(Code.Internal, "INVALID_RESPONSE", "registration returned no account");
          deps.directory.remember(r.account);
          const token = await deps.auth.issue({ accountId, deviceId: device.deviceId, userId });
          request.log.info({ accountId, userId }, "user signed up");
          return reply.code(201).send({
            user: userFromHandle(accountId, handle),
            device: deviceToJson(device),
            access_token: token,
            token_type: "bearer",
          });
        } catch (err) {
          // The id was registered some other way (e.g. directly with the delivery API): take the next.
          if (isAppError(err) && err.reason === "HANDLE_TAKEN" && attempt < SIGNUP_ATTEMPTS) continue;
          throw err;
        }
      }
    },
  );

  app.post<{ Body: RegistrationBody }>(
    "/v1/devices",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["accounts"],
        summary: "Add a device",
        description:
          "Registers a further device of the caller's user and returns that device's access token (hand it to the " +
          "new device). At most MAX_DEVICES devices per user (delivery setting).",
        security: [{ bearerAuth: [] }],
        body: registrationBody,
        response: { 201: credentialResponse, ...problems(400, 401, 429, 503) },
      },
    },
    async (request, reply) => {
      const me = principalOf(request);
      const r = await deps.link.directory.registerDevice(
        {
          accountId: me.accountId,
          registrationId: request.body.registration_id,
          password: generateDevicePassword(),
          deviceName: request.body.device_name ?? "",
        },
        CALL,
      );
      const device = r.device;
      if (device === undefined)
        throw new AppError(Code.Internal, "INVALID_RESPONSE", "registration returned no device");
      const token = await deps.auth.issue({
        accountId: me.accountId,
        deviceId: device.deviceId,
        userId: me.userId,
      });
      request.log.info({ accountId: me.accountId, deviceId: device.deviceId }, "device added");
      return reply.code(201).send({
        user: userFromHandle(me.accountId, { app: App.MESSENGER, providerId: "", value: me.userId }),
        device: deviceToJson(device),
        access_token: token,
        token_type: "bearer",
      });
    },
  );

  app.get(
    "/v1/me",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["accounts"],
        summary: "The caller's user and devices",
        security: [{ bearerAuth: [] }],
        response: {
          200: {
            type: "object",
            required: ["user", "device_id", "devices"],
            properties: {
              user: { $ref: "User#" },
              device_id: { type: "integer", description: "the calling device" },
              devices: { type: "array", items: { $ref: "Device#" } },
            },
          },
          ...problems(401, 503),
        },
      },
    },
    async (request) => {
      const me = principalOf(request);
      const r = await deps.link.directory.getAccount({ accountId: me.accountId }, CALL);
      if (r.result.case !== "found")
        throw new AppError(
          Code.Unauthenticated,
          "ACCOUNT_NOT_FOUND",
          "the account of this token no longer exists",
        );
      return { ...profileToJson(r.result.value), device_id: me.deviceId };
    },
  );

  app.delete<{ Params: { device_id: number } }>(
    "/v1/me/devices/:device_id",
    {
      onRequest: requireAuth,
      schema: {
        tags: ["accounts"],
        summary: "Remove a device",
        description:
          "Removes a linked device (its keys, queue and access tokens). The primary device may remove any linked " +
          "device; a linked device may remove itself. Device 1 cannot be removed (FAILED_PRECONDITION PRIMARY_DEVICE).",
        security: [{ bearerAuth: [] }],
        params: { type: "object", required: ["device_id"], properties: { device_id: deviceIdSchema } },
        response: { 204: { type: "null", description: "removed" }, ...problems(400, 401, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      const me = principalOf(request);
      const target = request.params.device_id;
      if (me.deviceId !== 1 && me.deviceId !== target)
        throw new AppError(
          Code.PermissionDenied,
          "NOT_PRIMARY_DEVICE",
          "only the primary device may remove other devices",
        );
      if (target === 1)
        throw new AppError(Code.FailedPrecondition, "PRIMARY_DEVICE", "the primary device cannot be removed");
      // Tokens go first, so the device cannot reconnect; a failed removal can simply be retried.
      await deps.auth.revokeDevice(me.accountId, target);
      deps.live.disconnect({ accountId: me.accountId, deviceId: target });
      await deps.link.directory.removeDevice({ accountId: me.accountId, deviceId: target }, CALL);
      return reply.code(204).send();
    },
  );
}
