// Public keys: upload your device's, fetch pre-key bundles of anyone's.
import { AppError, Code } from "@switchboard/errors";
import { appName, parseUserRef } from "../../domain/refs.js";
import { fromBase64 } from "../../domain/translate.js";
import type { FastifyInstance } from "fastify";
import type { RouteContext } from "../context.js";
import { bearer, problemResponses, ref, schemaParts, userRefSchema } from "../schemas.js";
import { bundleJson } from "../views.js";

interface WireSignedPreKey {
  key_id: number;
  public_key: string;
  signature: string;
}

interface UploadBody {
  identity_key?: string;
  signed_pre_key?: WireSignedPreKey;
  one_time_pre_keys?: { key_id: number; public_key: string }[];
  kyber_pre_keys?: WireSignedPreKey[];
  last_resort_kyber_pre_key?: WireSignedPreKey;
}

const counts = {
  type: "object",
  properties: {
    one_time_pre_key_count: { type: "integer" },
    kyber_pre_key_count: { type: "integer" },
  },
  required: ["one_time_pre_key_count", "kyber_pre_key_count"],
} as const;

const signed = (k: WireSignedPreKey | undefined) =>
  k && { keyId: k.key_id, publicKey: fromBase64(k.public_key), signature: fromBase64(k.signature) };

/** Registers the key routes. */
export async function keyRoutes(app: FastifyInstance, ctx: RouteContext): Promise<void> {
  const { link, directory, auth } = ctx;

  app.put<{ Body: UploadBody }>(
    "/v1/me/keys",
    {
      schema: {
        tags: ["keys"],
        summary: "Uploads your device's public keys (identity, signed, one-time and Kyber pre-keys)",
        description:
          "Unset fields keep the stored keys; one-time keys are added. The first upload needs identity_key, " +
          "signed_pre_key and last_resort_kyber_pre_key. At most 100 one-time keys of each kind per call.",
        security: bearer,
        body: {
          type: "object",
          properties: {
            identity_key: schemaParts.base64,
            signed_pre_key: ref("SignedPreKey"),
            one_time_pre_keys: { type: "array", maxItems: 100, items: ref("EcPreKey") },
            kyber_pre_keys: { type: "array", maxItems: 100, items: ref("SignedPreKey") },
            last_resort_kyber_pre_key: ref("SignedPreKey"),
          },
          additionalProperties: false,
        },
        response: { 200: counts, ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const b = request.body;
      const r = await link.keys.uploadKeys({
        device: me,
        identityKey: b.identity_key === undefined ? undefined : fromBase64(b.identity_key),
        signedPreKey: signed(b.signed_pre_key),
        oneTimePreKeys: (b.one_time_pre_keys ?? []).map((k) => ({
          keyId: k.key_id,
          publicKey: fromBase64(k.public_key),
        })),
        kyberPreKeys: (b.kyber_pre_keys ?? []).map(
          (k) => signed(k) as NonNullable<ReturnType<typeof signed>>,
        ),
        lastResortKyberPreKey: signed(b.last_resort_kyber_pre_key),
      });
      return { one_time_pre_key_count: r.oneTimePreKeyCount, kyber_pre_key_count: r.kyberPreKeyCount };
    },
  );

  app.get(
    "/v1/me/keys/count",
    {
      schema: {
        tags: ["keys"],
        summary: "Counts your device's remaining one-time pre-keys (refill when low)",
        security: bearer,
        response: { 200: counts, ...problemResponses },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const r = await link.keys.getPreKeyCount({ device: me });
      return { one_time_pre_key_count: r.oneTimePreKeyCount, kyber_pre_key_count: r.kyberPreKeyCount };
    },
  );

  app.get<{ Params: { ref: string }; Querystring: { device_id?: number } }>(
    "/v1/users/:ref/keys",
    {
      schema: {
        tags: ["keys"],
        summary: "Fetches pre-key bundles of a user's devices (each one-time key is handed out once)",
        security: bearer,
        params: { type: "object", properties: { ref: userRefSchema }, required: ["ref"] },
        querystring: {
          type: "object",
          properties: {
            device_id: {
              type: "integer",
              minimum: 0,
              maximum: 1000,
              description: "0 or absent: all devices.",
            },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              account_id: schemaParts.uuid,
              app: { type: "string" },
              devices: { type: "array", items: ref("PreKeyBundle") },
            },
            required: ["account_id", "app", "devices"],
          },
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const me = await auth.authenticate(request);
      const parsed = parseUserRef(request.params.ref);
      const accountId =
        parsed?.kind === "account"
          ? parsed.accountId
          : (await directory.getByRef(request.params.ref)).account?.id;
      const r = await link.keys.getPreKeyBundles({
        requester: me,
        accountId,
        deviceId: request.query.device_id ?? 0,
      });
      if (r.result.case !== "bundles")
        throw new AppError(Code.NotFound, "USER_NOT_FOUND", `no such user or device: ${request.params.ref}`);
      return {
        account_id: accountId,
        app: appName(r.result.value.app),
        devices: r.result.value.bundles.map(bundleJson),
      };
    },
  );
}
