// Users of every app in the Messenger-style API's idiom (docs/addressing.md): numeric ids for our
// own users, `{"app": ..., <handle field>: ...}` for users of the other apps, and the service-wide
// `account_id` on everything this API returns.
import { AppError, Code } from "@switchboard/errors";
import { App } from "@switchboard/proto";

/** An app-native handle: the app (with its provider for third parties) and the value. */
export interface HandleRef {
  app: App;
  /** For App.THIRD_PARTY: the provider id ("acme"); empty otherwise. */
  providerId: string;
  value: string;
}

/**
 * A user as this API renders one: the service-wide `account_id`, the app (`messenger`,
 * `whatsapp`, `instagram` or `provider:<id>`) and the app's handle field (`id`, `phone`,
 * `username` or `handle`). The handle field is missing only when the directory no longer knows
 * the account.
 */
export interface UserJson {
  account_id: string;
  app: string;
  id?: string;
  phone?: string;
  username?: string;
  handle?: string;
}

/**
 * A recipient as clients write one: `{"id":"100004"}` (a Messenger-style user, `app` optional),
 * `{"app":"whatsapp","phone":"+1555..."}`, `{"app":"instagram","username":"ada.l"}`,
 * `{"app":"provider:acme","handle":"alice"}`, or `{"account_id":"<uuid>"}`. When `account_id`
 * is present it wins and the other members are ignored (a rendered UserJson is a valid recipient).
 */
export interface RecipientJson {
  account_id?: string;
  app?: string;
  id?: string;
  phone?: string;
  username?: string;
  handle?: string;
}

/** A parsed recipient: a service-wide account id, or a handle to resolve with the directory. */
export type Recipient = { kind: "account"; accountId: string } | { kind: "handle"; handle: HandleRef };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NUMERIC_ID = /^[1-9][0-9]{0,19}$/;
const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** True for a UUID (any case). */
export const isUuid = (s: string): boolean => UUID.test(s);

/** True for a Messenger-style numeric user id ("100004"). */
export const isNumericUserId = (s: string): boolean => NUMERIC_ID.test(s);

const invalidRecipient = (detail: string) => new AppError(Code.InvalidArgument, "INVALID_RECIPIENT", detail);

/** The API's name of an app: `messenger`, `whatsapp`, `instagram`, `provider:<id>` (or `unspecified`). */
export function appName(app: App, providerId: string): string {
  switch (app) {
    case App.MESSENGER:
      return "messenger";
    case App.WHATSAPP:
      return "whatsapp";
    case App.INSTAGRAM:
      return "instagram";
    case App.THIRD_PARTY:
      return `provider:${providerId}`;
    default:
      return "unspecified";
  }
}

/** Parses an app name written by `appName`; undefined for anything else. */
export function parseAppName(name: string): { app: App; providerId: string } | undefined {
  switch (name) {
    case "messenger":
      return { app: App.MESSENGER, providerId: "" };
    case "whatsapp":
      return { app: App.WHATSAPP, providerId: "" };
    case "instagram":
      return { app: App.INSTAGRAM, providerId: "" };
    case "unspecified":
      return { app: App.UNSPECIFIED, providerId: "" };
    default: {
      if (!name.startsWith("provider:")) return undefined;
      const providerId = name.slice("provider:".length);
      return PROVIDER_ID.test(providerId) ? { app: App.THIRD_PARTY, providerId } : undefined;
    }
  }
}

/** Which member of a user object holds the handle of `app`. */
function handleField(app: App): "id" | "phone" | "username" | "handle" | undefined {
  switch (app) {
    case App.MESSENGER:
      return "id";
    case App.WHATSAPP:
      return "phone";
    case App.INSTAGRAM:
      return "username";
    case App.THIRD_PARTY:
      return "handle";
    default:
      return undefined;
  }
}

/** Renders an account as a user object; without a handle only `account_id` and `app` are set. */
export function userJson(
  accountId: string,
  app: { app: App; providerId: string },
  handleValue?: string,
): UserJson {
  const user: UserJson = { account_id: accountId, app: appName(app.app, app.providerId) };
  const field = handleField(app.app);
  if (field !== undefined && handleValue !== undefined) user[field] = handleValue;
  return user;
}

/** Renders an account with its handle. */
export const userFromHandle = (accountId: string, handle: HandleRef): UserJson =>
  userJson(accountId, handle, handle.value);

/** The handle a user object names, if it names one. */
export function handleOfUser(user: RecipientJson): HandleRef | undefined {
  const parsed = user.app === undefined ? { app: App.MESSENGER, providerId: "" } : parseAppName(user.app);
  if (parsed === undefined) return undefined;
  const field = handleField(parsed.app);
  const value = field === undefined ? undefined : user[field];
  return value === undefined ? undefined : { ...parsed, value };
}

/**
 * Parses a recipient object. Throws INVALID_ARGUMENT (INVALID_RECIPIENT) when it names no user
 * or mixes the forms of different apps.
 */
export function recipientFromJson(json: RecipientJson): Recipient {
  if (json.account_id !== undefined) {
    if (!isUuid(json.account_id)) throw invalidRecipient("account_id must be a UUID");
    return { kind: "account", accountId: json.account_id.toLowerCase() };
  }
  const app = json.app ?? "messenger";
  const parsed = parseAppName(app);
  if (parsed === undefined || parsed.app === App.UNSPECIFIED)
    throw invalidRecipient(`unknown app "${app}": use messenger, whatsapp, instagram or provider:<id>`);
  const field = handleField(parsed.app) ?? "id";
  const present = (["id", "phone", "username", "handle"] as const).filter((f) => json[f] !== undefined);
  if (present.length !== 1 || present[0] !== field) {
    throw invalidRecipient(
      `a recipient of app "${app}" is named by "${field}" alone` +
        (app === "messenger" ? ' (e.g. {"id":"100004"})' : ""),
    );
  }
  const value = json[field] ?? "";
  if (parsed.app === App.MESSENGER && !isNumericUserId(value))
    throw invalidRecipient("a Messenger-style user id is a decimal number such as 100004");
  return { kind: "handle", handle: { ...parsed, value } };
}

/**
 * Parses a recipient written in a URL path: `100004`, `messenger:100004`, `whatsapp:+15551234567`,
 * `instagram:ada.l`, `provider:acme:alice`, or an account UUID. Throws INVALID_ARGUMENT
 * (INVALID_RECIPIENT) otherwise.
 */
export function recipientFromPath(ref: string): Recipient {
  if (isNumericUserId(ref))
    return { kind: "handle", handle: { app: App.MESSENGER, providerId: "", value: ref } };
  if (isUuid(ref)) return { kind: "account", accountId: ref.toLowerCase() };
  const colon = ref.indexOf(":");
  const prefix = colon > 0 ? ref.slice(0, colon) : "";
  const rest = ref.slice(colon + 1);
  switch (prefix) {
    case "messenger":
      return recipientFromJson({ id: rest });
    case "whatsapp":
      return recipientFromJson({ app: "whatsapp", phone: rest });
    case "instagram":
      return recipientFromJson({ app: "instagram", username: rest });
    case "provider": {
      const second = rest.indexOf(":");
      if (second <= 0) break;
      return recipientFromJson({ app: `provider:${rest.slice(0, second)}`, handle: rest.slice(second + 1) });
    }
    default:
      break;
  }
  throw invalidRecipient(
    "a user reference is a numeric id, an account UUID, or whatsapp:<phone>, instagram:<username>, provider:<id>:<handle>",
  );
}

/** The path form of a recipient (the inverse of `recipientFromPath`). */
export function recipientToPath(recipient: Recipient): string {
  if (recipient.kind === "account") return recipient.accountId;
  const { app, providerId, value } = recipient.handle;
  switch (app) {
    case App.MESSENGER:
      return value;
    case App.WHATSAPP:
      return `whatsapp:${value}`;
    case App.INSTAGRAM:
      return `instagram:${value}`;
    default:
      return `provider:${providerId}:${value}`;
  }
}
