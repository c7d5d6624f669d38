// Rendering delivery-service messages as this API's JSON.
import type { Account, Device, Group, PreKeyBundle } from "@switchboard/proto";

/** An account with its devices (AccountWithDevices or the parts of a registration). */
export interface AccountLike {
  account?: Account;
  devices: Device[];
}
import { appName, refOfHandle } from "../domain/refs.js";
import { toBase64 } from "../domain/translate.js";

/** A device as JSON. */
export function deviceJson(d: Device) {
  return {
    device_id: d.deviceId,
    registration_id: d.registrationId,
    name: d.name,
    created_at_ms: Number(d.createdAtMs),
  };
}

/** A user with devices as JSON. */
export function userJson(a: AccountLike) {
  const handle = a.account?.handle;
  const app = handle?.app ?? 0;
  return {
    account_id: a.account?.id ?? "",
    ref: handle ? refOfHandle(handle) : "",
    app: appName(app),
    handle: handle?.value ?? "",
    ...(handle?.providerId ? { provider_id: handle.providerId } : {}),
    created_at_ms: Number(a.account?.createdAtMs ?? 0n),
    devices: a.devices.map(deviceJson),
  };
}

/** A thread member as JSON. */
export function threadUserJson(a: AccountLike) {
  const handle = a.account?.handle;
  return {
    account_id: a.account?.id ?? "",
    ...(handle ? { ref: refOfHandle(handle) } : {}),
    app: appName(handle?.app ?? 0),
    devices: a.devices.map((d) => ({ device_id: d.deviceId, registration_id: d.registrationId })),
  };
}

/** A private thread as JSON. */
export function privateThreadJson(threadId: string, peer: AccountLike, pending: boolean) {
  return { thread_id: threadId, thread_type: "private" as const, users: [threadUserJson(peer)], pending };
}

/** A group thread as JSON. */
export function groupThreadJson(g: Group) {
  return {
    thread_id: g.id,
    thread_type: "group" as const,
    users: g.members.map(threadUserJson),
    creator_account_id: g.creatorAccountId,
    revision: Number(g.revision),
    pending: false,
  };
}

/** A pre-key bundle as JSON. */
export function bundleJson(b: PreKeyBundle) {
  const signed = (k: { keyId: number; publicKey: Uint8Array; signature: Uint8Array } | undefined) =>
    k && { key_id: k.keyId, public_key: toBase64(k.publicKey), signature: toBase64(k.signature) };
  return {
    device_id: b.deviceId,
    registration_id: b.registrationId,
    identity_key: toBase64(b.identityKey),
    ...(b.signedPreKey ? { signed_pre_key: signed(b.signedPreKey) } : {}),
    ...(b.oneTimePreKey
      ? {
          one_time_pre_key: {
            key_id: b.oneTimePreKey.keyId,
            public_key: toBase64(b.oneTimePreKey.publicKey),
          },
        }
      : {}),
    ...(b.kyberPreKey ? { kyber_pre_key: signed(b.kyberPreKey) } : {}),
    kyber_pre_key_is_last_resort: b.kyberPreKeyIsLastResort,
  };
}
