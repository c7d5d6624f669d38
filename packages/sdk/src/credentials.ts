// Authorization header values of the delivery API (see directory.proto).
import type { DeviceCredentials } from "./transport.js";

/** `Basic base64("<accountId>.<deviceId>:<password>")`: a device acting as itself. */
export function basicAuthorization(credentials: DeviceCredentials): string {
  const raw = `${credentials.accountId}.${credentials.deviceId}:${credentials.password}`;
  return `Basic ${Buffer.from(raw, "utf8").toString("base64")}`;
}

/** `Bearer <token>`: an app (gateway or provider) acting for accounts of its own app. */
export function bearerAuthorization(appToken: string): string {
  return `Bearer ${appToken}`;
}
