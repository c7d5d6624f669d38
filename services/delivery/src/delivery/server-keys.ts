import { randomBytes } from "node:crypto";
import { getOrCreateServerKey, type Database } from "@switchboard/storage";
import type { Kysely } from "kysely";
import { createFranker, type Franker } from "../domain/franking.js";
import {
  createCertificateAuthority,
  generatePrivateKey,
  type CertificateAuthority,
} from "../domain/sealed-sender.js";

/** Names of the rows in `server_keys`. */
export const SERVER_KEY_NAMES = {
  franking: "franking-secret",
  trustRoot: "sealed-sender-trust-root",
  server: "sealed-sender-server",
} as const;

/** Environment overrides (base64); unset ones are generated once and shared through the database. */
export interface ServerKeyOverrides {
  FRANKING_SECRET?: string;
  SEALED_SENDER_TRUST_ROOT_KEY?: string;
  SEALED_SENDER_SERVER_KEY?: string;
}

/** The server secrets of the safety features, loaded once per instance. */
export interface SafetyKeys {
  franker: Franker;
  authority: CertificateAuthority;
}

const decode = (value: string | undefined): Uint8Array | undefined =>
  value === undefined || value === "" ? undefined : new Uint8Array(Buffer.from(value, "base64"));

/**
 * Loads (or, on the first start of a deployment, generates) the franking secret and the
 * sealed-sender keys. Generated values are inserted only if absent, so instances starting
 * together all use the one that won. An environment override is used as is and never stored.
 */
export async function loadSafetyKeys(
  db: Kysely<Database>,
  overrides: ServerKeyOverrides = {},
): Promise<SafetyKeys> {
  const get = async (name: string, override: string | undefined, generate: () => Uint8Array) =>
    decode(override) ?? (await getOrCreateServerKey(db, name, generate()));
  const franking = await get(SERVER_KEY_NAMES.franking, overrides.FRANKING_SECRET, () => randomBytes(32));
  const trustRootKey = await get(
    SERVER_KEY_NAMES.trustRoot,
    overrides.SEALED_SENDER_TRUST_ROOT_KEY,
    generatePrivateKey,
  );
  const serverKey = await get(
    SERVER_KEY_NAMES.server,
    overrides.SEALED_SENDER_SERVER_KEY,
    generatePrivateKey,
  );
  return {
    franker: createFranker(franking),
    authority: createCertificateAuthority({ trustRootKey, serverKey }),
  };
}
