// Every Redis channel fanout uses is built here and nowhere else. Fanout stores no Redis keys.
//
//   ${prefix}dev:{${accountId}}:${deviceId}   one device's events. `{accountId}` is the cluster hash
//                                             tag: all devices of an account share one slot (one shard).
//   ${prefix}broadcast                        events for every instance (e.g. credential revocation).
//   ${prefix}events                           batches of device events (event-batch.ts), published once
//                                             per batch by the classic Redis fanout; every instance
//                                             subscribes it and dispatches to its local device handlers.
//
// `prefix` is the `keyPrefix` option (default ""), e.g. "sb:" or a per-test "t3f9a:". It must not
// contain `{` or `}`, which would move the hash tag.
import { AppError, Code } from "@switchboard/errors";
import type { DeviceKey } from "./fanout.js";

/**
 * The pub/sub channel of one device, `${keyPrefix}dev:{${accountId}}:${deviceId}`. Throws INVALID_ARGUMENT
 * `INVALID_DEVICE_KEY` for an empty account id or a device id that is not a non-negative safe integer.
 */
export function channelForDevice(key: DeviceKey, keyPrefix = ""): string {
  if (key.accountId === "" || !Number.isSafeInteger(key.deviceId) || key.deviceId < 0) {
    throw new AppError(
      Code.InvalidArgument,
      "INVALID_DEVICE_KEY",
      "a device key needs a non-empty accountId and a non-negative integer deviceId",
    );
  }
  return `${keyPrefix}dev:{${key.accountId}}:${key.deviceId}`;
}

/** The channel every instance subscribes for broadcasts, `${keyPrefix}broadcast`. */
export function broadcastChannel(keyPrefix = ""): string {
  return `${keyPrefix}broadcast`;
}

/** The channel carrying batches of device events, `${keyPrefix}events` (classic Redis fanout). */
export function eventsChannel(keyPrefix = ""): string {
  return `${keyPrefix}events`;
}

/** Return `keyPrefix` if it is usable, else throw INVALID_ARGUMENT `INVALID_KEY_PREFIX` (braces would move the hash tag). */
export function checkKeyPrefix(keyPrefix: string): string {
  if (/[{}]/.test(keyPrefix)) {
    throw new AppError(Code.InvalidArgument, "INVALID_KEY_PREFIX", "keyPrefix must not contain '{' or '}'");
  }
  return keyPrefix;
}
