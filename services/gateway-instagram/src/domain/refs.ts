// User refs: how the Instagram-style API names users of every app (docs/addressing.md).
import { App } from "@switchboard/proto";

/** A parsed user ref: an account id, or an app-native handle to resolve. */
export type UserRef =
  { kind: "account"; accountId: string } | { kind: "handle"; app: App; value: string; providerId: string };

/** Instagram usernames: 1-30 of [a-z0-9._] (stored lower-case). */
export const USERNAME_PATTERN = /^[a-z0-9._]{1,30}$/;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const E164_PATTERN = /^\+[1-9][0-9]{6,14}$/;
const MESSENGER_ID_PATTERN = /^[1-9][0-9]{0,19}$/;
const PROVIDER_PATTERN = /^[a-z0-9][a-z0-9-]{0,31}$/;
const MAX_HANDLE_BYTES = 64;

/** Lower-cases and validates a username; undefined when it is not one. */
export function normalizeUsername(raw: string): string | undefined {
  const username = raw.toLowerCase();
  return USERNAME_PATTERN.test(username) ? username : undefined;
}

/** True for a lower-case UUID (a service-wide account or group id). */
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

/**
 * Parses a user ref: `ada.l` (Instagram username, any case), `whatsapp:+15551234567`,
 * `messenger:100004`, `instagram:ada.l`, `<provider>:<handle>` (third-party provider) or an account
 * id (UUID). Returns undefined for anything else.
 */
export function parseUserRef(raw: string): UserRef | undefined {
  const lower = raw.toLowerCase();
  if (isUuid(lower)) return { kind: "account", accountId: lower };
  const colon = raw.indexOf(":");
  if (colon < 0) {
    const username = normalizeUsername(raw);
    return username === undefined
      ? undefined
      : { kind: "handle", app: App.INSTAGRAM, value: username, providerId: "" };
  }
  const prefix = raw.slice(0, colon).toLowerCase();
  const value = raw.slice(colon + 1);
  switch (prefix) {
    case "instagram": {
      const username = normalizeUsername(value);
      return username === undefined
        ? undefined
        : { kind: "handle", app: App.INSTAGRAM, value: username, providerId: "" };
    }
    case "whatsapp":
      return E164_PATTERN.test(value)
        ? { kind: "handle", app: App.WHATSAPP, value, providerId: "" }
        : undefined;
    case "messenger":
      return MESSENGER_ID_PATTERN.test(value)
        ? { kind: "handle", app: App.MESSENGER, value, providerId: "" }
        : undefined;
    default:
      if (!PROVIDER_PATTERN.test(prefix) || value.length === 0 || Buffer.byteLength(value) > MAX_HANDLE_BYTES)
        return undefined;
      return { kind: "handle", app: App.THIRD_PARTY, value, providerId: prefix };
  }
}

/** Renders an account's handle as a ref (the inverse of parseUserRef for handles). */
export function refOfHandle(handle: { app: App; value: string; providerId: string }): string {
  switch (handle.app) {
    case App.INSTAGRAM:
      return handle.value;
    case App.WHATSAPP:
      return `whatsapp:${handle.value}`;
    case App.MESSENGER:
      return `messenger:${handle.value}`;
    case App.THIRD_PARTY:
      return `${handle.providerId}:${handle.value}`;
    default:
      return `unknown:${handle.value}`;
  }
}

/** App names used in JSON (`sender.app`, `users[].app`). */
export type AppName = "instagram" | "whatsapp" | "messenger" | "third_party" | "unspecified";

/** The JSON name of an app. */
export function appName(app: App): AppName {
  switch (app) {
    case App.INSTAGRAM:
      return "instagram";
    case App.WHATSAPP:
      return "whatsapp";
    case App.MESSENGER:
      return "messenger";
    case App.THIRD_PARTY:
      return "third_party";
    default:
      return "unspecified";
  }
}

/** The app of a JSON app name. */
export function appOfName(name: AppName): App {
  switch (name) {
    case "instagram":
      return App.INSTAGRAM;
    case "whatsapp":
      return App.WHATSAPP;
    case "messenger":
      return App.MESSENGER;
    case "third_party":
      return App.THIRD_PARTY;
    default:
      return App.UNSPECIFIED;
  }
}
