/** A device as known to the server, or as the sender believes it to be. */
export interface DeviceRegistration {
  deviceId: number;
  registrationId: number;
}

/** The outcome of comparing a sender's device list with the recipient's. */
export type DeviceListCheck =
  | { kind: "ok" }
  | { kind: "mismatched"; missing: number[]; extra: number[] }
  | { kind: "stale"; stale: number[] };

const OK: DeviceListCheck = { kind: "ok" };

/**
 * Whether `addressed` names exactly the current devices (but `excludeDeviceId`), each once, with
 * their current registration ids: the answer for nearly every send, found without allocating.
 */
function sameDevices(
  current: readonly DeviceRegistration[],
  addressed: readonly DeviceRegistration[],
  excludeDeviceId: number | undefined,
): boolean {
  let n = 0;
  for (const d of current) {
    if (d.deviceId === excludeDeviceId) continue;
    n++;
    let matches = 0;
    for (const a of addressed) {
      if (a.deviceId !== d.deviceId) continue;
      if (a.registrationId !== d.registrationId) return false;
      matches++;
    }
    if (matches !== 1) return false;
  }
  return n === addressed.length;
}

/**
 * Compares the devices a sender addressed with the recipient's current devices, ignoring
 * `excludeDeviceId` (the sending device, when syncing to one's own account). Missing or extra
 * devices win over stale registration ids, as in Signal-Server.
 */
export function checkDeviceList(
  current: readonly DeviceRegistration[],
  addressed: readonly DeviceRegistration[],
  excludeDeviceId?: number,
): DeviceListCheck {
  if (sameDevices(current, addressed, excludeDeviceId)) return OK;
  const have = new Map<number, number>();
  for (const d of current) if (d.deviceId !== excludeDeviceId) have.set(d.deviceId, d.registrationId);
  const sent = new Map<number, number>();
  for (const d of addressed) sent.set(d.deviceId, d.registrationId);
  const missing = [...have.keys()].filter((id) => !sent.has(id)).sort((a, b) => a - b);
  const extra = [...sent.keys()].filter((id) => !have.has(id)).sort((a, b) => a - b);
  if (missing.length > 0 || extra.length > 0) return { kind: "mismatched", missing, extra };
  const stale = [...sent.entries()]
    .filter(([id, reg]) => have.get(id) !== reg)
    .map(([id]) => id)
    .sort((a, b) => a - b);
  return stale.length > 0 ? { kind: "stale", stale } : OK;
}
