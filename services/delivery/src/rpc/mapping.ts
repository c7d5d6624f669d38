import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AccountWithDevicesSchema, App } from "@switchboard/proto";
import type { AccountRow, DeviceSummary } from "@switchboard/storage";

/** Maps an account row and its devices to the wire AccountWithDevices. */
export function accountToProto(
  account: AccountRow,
  devices: readonly DeviceSummary[],
): MessageInitShape<typeof AccountWithDevicesSchema> {
  return {
    account: {
      id: account.id,
      handle: { app: account.app as App, value: account.handle, providerId: account.provider_id },
      createdAtMs: BigInt(account.created_at.getTime()),
    },
    devices: devices.map((d) => ({
      deviceId: d.deviceId,
      registrationId: d.registrationId,
      name: d.name,
      createdAtMs: BigInt(d.createdAt.getTime()),
    })),
  };
}
