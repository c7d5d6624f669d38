// Accounts, devices and access tokens.
import { AppError, Code, isAppError } from "@switchboard/errors";
import { App, RequestsPolicy } from "@switchboard/proto";
import type { FastifyInstance } from "fastify";
import { normalizeUsername } from "../../domain/refs.js";
import { generateAccessToken, generateDevicePassword, tokenDigest } from "../../domain/tokens.js";
import { deleteDeviceRequests } from "../../storage/request-repository.js";
import { deleteDeviceTokens, insertToken } from "../../storage/token-repository.js";
import type { RouteContext } from "../context.js";
import { bearer, problemResponses, ref, schemaParts, userRefSchema } from "../schemas.js";
import { deviceJson, userJson } from "../views.js";

const password = {
  type: "string",
  minLength: 16,
  maxLength: 128,
  description:
    "Optional device secret (16-128 characters) for POST /v1/auth/token, e.g. to sign in again after " +
    "a reinstall of the app's state. When omitted the device can only use the access token returned here.",
} as const;
const deviceName = { type: "string", maxLength: 64 } as const;

interface RegisterBody {
  username: string;
  registration_id: number;
  password?: string;
  device_name?: string;
  minor?: boolean;
}

interface DeviceBody {
  registration_id: number;
  password?: string;
  device_name?: string;
}

interface TokenBody {
  username?: string;
  account_id?: string;
  device_id: number;
  password: string;
}

/** Registers the account, device and token routes. */
export async function accountRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { db, link, directory, auth, hub } = ctx;

  async function issueToken(accountId: string, deviceId: number): Promise<string> {
    const token = generateAccessToken();
    await insertToken(db, tokenDigest(token), { accountId, deviceId });
    return token;
  }

  app.post<{ Body: RegisterBody }>(
    "/v1/accounts",
    {
      schema: {
        tags: ["accounts"],
        summary: "Sign up: creates an account with its first device and returns an access token",
        body: {
          type: "object",
          properties: {
            username: { type: "string", pattern: "^[A-Za-z0-9._]{1,30}$", description: "Stored lower-case." },
            registration_id: schemaParts.registrationId,
            password,
            device_name: deviceName,
            minor: {
              type: "boolean",
              description:
                "The app's own age signal: the user is a minor. Minors receive no message and no group invitation " +
                "from adults they have not accepted (docs/safety.md); never shown to other users.",
            },
          },
          required: ["username", "registration_id"],
          additionalProperties: false,
        },
        response: {
          201: {
            type: "object",
            properties: { account: ref("User"), device: ref("Device"), access_token: { type: "string" } },
            required: ["account", "device", "access_token"],
          },
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const username = normalizeUsername(request.body.username);
      if (username === undefined)
        throw new AppError(Code.InvalidArgument, "INVALID_USERNAME", "usernames are 1-30 of [a-z0-9._]");
      const r = await link.directory.registerAccount({
        handle: { app: App.INSTAGRAM, value: username },
        registrationId: request.body.registration_id,
        password: request.body.password ?? generateDevicePassword(),
        deviceName: request.body.device_name ?? "",
        minor: request.body.minor === true,
        // This gateway holds message requests in its own folder (ig_requests), minors' included.
        requestsPolicy: RequestsPolicy.DELIVER_MARKED,
      });
      if (r.account === undefined || r.device === undefined)
        throw new AppError(Code.Internal, "INVALID_RESPONSE", "registration returned no account");
      directory.remember(r.account);
      const accessToken = await issueToken(r.account.id, r.device.deviceId);
      return reply.code(201).send({
        account: userJson({ account: r.account, devices: [r.device] }),
        device: deviceJson(r.device),
        access_token: accessToken,
      });
    },
  );

  app.post<{ Body: TokenBody }>(
    "/v1/auth/token",
    {
      schema: {
        tags: ["accounts"],
        summary: "Signs a device in with the secret it registered with; returns a new access token",
        body: {
          type: "object",
          properties: {
            username: { type: "string", pattern: "^[A-Za-z0-9._]{1,30}$" },
            account_id: schemaParts.uuid,
            device_id: schemaParts.deviceId,
            password: { type: "string", minLength: 1, maxLength: 128 },
          },
          required: ["device_id", "password"],
          additionalProperties: false,
        },
        response: {
          200: {
            type: "object",
            properties: {
              account_id: schemaParts.uuid,
              device_id: { type: "integer" },
              access_token: { type: "string" },
            },
            required: ["account_id", "device_id", "access_token"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const { username, account_id, device_id, password: secret } = request.body;
      const invalid = () =>
        new AppError(Code.Unauthenticated, "INVALID_CREDENTIALS", "unknown user, device or password");
      const userRef = account_id ?? (username === undefined ? undefined : `instagram:${username}`);
      if (userRef === undefined)
        throw new AppError(Code.InvalidArgument, "MISSING_USER", "give username or account_id");
      const account = await directory.findByRef(userRef);
      if (account?.account?.handle?.app !== App.INSTAGRAM) throw invalid();
      const accountId = account.account.id;
      const basic = Buffer.from(`${accountId}.${device_id}:${secret}`).toString("base64");
      try {
        // The delivery service holds the device secret (as a slow hash): let it check.
        await link.keys.getPreKeyCount({}, { metadata: { authorization: `Basic ${basic}` } });
      } catch (err) {
        if (isAppError(err) && err.code === Code.Unauthenticated) throw invalid();
        throw err;
      }
      return { account_id: accountId, device_id, access_token: await issueToken(accountId, device_id) };
    },
  );

  app.post<{ Body: DeviceBody }>(
    "/v1/devices",
    {
      schema: {
        tags: ["accounts"],
        summary: "Adds a device to your account (from the primary device); returns its access token",
        security: bearer,
        body: {
          type: "object",
          properties: { registration_id: schemaParts.registrationId, password, device_name: deviceName },
          required: ["registration_id"],
          additionalProperties: false,
        },
        response: {
          201: {
            type: "object",
            properties: { device: ref("Device"), access_token: { type: "string" } },
            required: ["device", "access_token"],
          },
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const me = await auth.authenticate(request);
      if (me.deviceId !== 1)
        throw new AppError(
          Code.PermissionDenied,
          "NOT_PRIMARY_DEVICE",
          "only the primary device adds devices",
        );
      const r = await link.directory.registerDevice({
        accountId: me.accountId,
        registrationId: request.body.registration_id,
        password: request.body.password ?? generateDevicePassword(),
        deviceName: request.body.device_name ?? "",
      });
      if (r.device === undefined) throw new AppError(Code.Internal, "INVALID_RESPONSE", "no device returned");
      const accessToken = await issueToken(me.accountId, r.device.deviceId);
      return reply.code(201).send({ device: deviceJson(r.device), access_token: accessToken });
    },
  );

  app.delete<{ Params: { device_id: number } }>(
    "/v1/devices/:device_id",
    {
      schema: {
        tags: ["accounts"],
        summary: "Removes a device (the primary device removes others; any device removes itself)",
        security: bearer,
        params: {
          type: "object",
          properties: { device_id: schemaParts.deviceId },
          required: ["device_id"],
        },
        response: { 204: { type: "null", description: "Removed." }, ...problemResponses },
      },
    },
    async (request, reply) => {
      const me = await auth.authenticate(request);
      const target = { accountId: me.accountId, deviceId: request.params.device_id };
      if (me.deviceId !== 1 && me.deviceId !== target.deviceId)
        throw new AppError(
          Code.PermissionDenied,
          "NOT_PRIMARY_DEVICE",
          "only the primary device removes others",
        );
      await link.directory.removeDevice(target);
      await deleteDeviceTokens(db, target);
      auth.forgetDevice(target);
      await deleteDeviceRequests(db, target.accountId, target.deviceId);
      hub.disconnect(target, "DEVICE_REMOVED");
      return reply.code(204).send();
    },
  );

  app.get(
    "/v1/me",
    {
      schema: {
        tags: ["accounts"],
        summary: "Your account, devices and the device this token belongs to",
        security: bearer,
        response: {
          200: {
            type: "object",
            properties: { user: ref("User"), device_id: { type: "integer" } },
            required: ["user", "device_id"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const account = await directory.findAccount(me.accountId);
      if (account === undefined) throw new AppError(Code.NotFound, "USER_NOT_FOUND", "your account is gone");
      return { user: userJson(account), device_id: me.deviceId };
    },
  );

  app.get<{ Params: { ref: string } }>(
    "/v1/users/:ref",
    {
      schema: {
        tags: ["users"],
        summary: "Looks up a user of any app by ref",
        security: bearer,
        params: { type: "object", properties: { ref: userRefSchema }, required: ["ref"] },
        response: { 200: ref("User"), ...problemResponses },
      },
    },
    async (request) => {
      await auth.authenticate(request);
      return userJson(await directory.getByRef(request.params.ref));
    },
  );
}
