// JIDs: the WhatsApp-style gateway's names for users, devices and groups of every app
// (docs/addressing.md). Pure: parsing, formatting and conversion to and from Handles.
import { AppError, Code } from "@switchboard/errors";
import { App, newHandle, type Handle } from "@switchboard/proto";

/** A user of any app, or one device of it (`device` set). */
export interface UserJid {
  kind: "user";
  handle: Handle;
  /** The device number (>= 1), or undefined for the user as a whole. */
  device?: number;
}

/** A group, `<uuid>@g.us`. */
export interface GroupJid {
  kind: "group";
  groupId: string;
}

/** A parsed JID. */
export type Jid = UserJid | GroupJid;

/** The server part of WhatsApp-style user JIDs. */
export const WHATSAPP_SERVER = "s.whatsapp.net";
/** The server part of group JIDs. */
export const GROUP_SERVER = "g.us";
const MESSENGER_SERVER = "messenger";
const INSTAGRAM_SERVER = "instagram";
const PROVIDER_SUFFIX = ".provider";

const PHONE_DIGITS = /^[1-9][0-9]{6,14}$/;
const NUMERIC_ID = /^[1-9][0-9]{0,19}$/;
const USERNAME = /^[a-z0-9._]{1,30}$/;
const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
const PROVIDER_HANDLE = /^[a-z0-9._@+-]{1,64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DEVICE_SUFFIX = /^(.*):([1-9][0-9]{0,9})$/;
/** Largest device number a JID may carry (device ids are uint32 on the wire; far fewer exist). */
const MAX_DEVICE = 2 ** 31 - 1;

/** E.164: "+" and 7-15 digits, no leading zero. */
export const E164 = /^\+[1-9][0-9]{6,14}$/;

const invalidJid = (jid: string, why: string) =>
  new AppError(Code.InvalidArgument, "INVALID_JID", `invalid JID ${JSON.stringify(jid)}: ${why}`, {
    metadata: { jid: jid.slice(0, 128) },
  });

/** True for an Instagram-style username as the delivery service accepts it. */
function isUsername(v: string): boolean {
  return USERNAME.test(v) && !v.startsWith(".") && !v.endsWith(".") && !v.includes("..");
}

/**
 * Parses a JID of any form in docs/addressing.md. Instagram usernames and third-party handles are
 * lower-cased (as the delivery service normalises them). Throws INVALID_ARGUMENT (INVALID_JID).
 */
export function parseJid(jid: string): Jid {
  const at = jid.lastIndexOf("@");
  if (at <= 0 || at === jid.length - 1) throw invalidJid(jid, "expected <user>@<server>");
  const server = jid.slice(at + 1).toLowerCase();
  let local = jid.slice(0, at);
  if (server === GROUP_SERVER) {
    const id = local.toLowerCase();
    if (!UUID.test(id)) throw invalidJid(jid, "a group JID is <uuid>@g.us");
    return { kind: "group", groupId: id };
  }
  let device: number | undefined;
  const m = DEVICE_SUFFIX.exec(local);
  if (m) {
    local = m[1] ?? "";
    device = Number(m[2]);
    if (device > MAX_DEVICE) throw invalidJid(jid, "device number out of range");
  }
  let handle: Handle;
  if (server === WHATSAPP_SERVER) {
    if (!PHONE_DIGITS.test(local)) throw invalidJid(jid, "expected the E.164 number without '+'");
    handle = newHandle({ app: App.WHATSAPP, value: `+${local}` });
  } else if (server === MESSENGER_SERVER) {
    if (!NUMERIC_ID.test(local)) throw invalidJid(jid, "expected a numeric Messenger-style id");
    handle = newHandle({ app: App.MESSENGER, value: local });
  } else if (server === INSTAGRAM_SERVER) {
    const username = local.toLowerCase();
    if (!isUsername(username)) throw invalidJid(jid, "expected an Instagram-style username");
    handle = newHandle({ app: App.INSTAGRAM, value: username });
  } else if (server.endsWith(PROVIDER_SUFFIX)) {
    const providerId = server.slice(0, -PROVIDER_SUFFIX.length);
    const value = local.toLowerCase();
    if (!PROVIDER_ID.test(providerId)) throw invalidJid(jid, "invalid provider id");
    if (!PROVIDER_HANDLE.test(value)) throw invalidJid(jid, "invalid third-party handle");
    handle = newHandle({ app: App.THIRD_PARTY, value, providerId });
  } else {
    throw invalidJid(jid, `unknown server "${server}"`);
  }
  return device === undefined ? { kind: "user", handle } : { kind: "user", handle, device };
}

/** Parses a user or device JID; a group JID fails INVALID_ARGUMENT (USER_JID_REQUIRED). */
export function parseUserJid(jid: string): UserJid {
  const parsed = parseJid(jid);
  if (parsed.kind !== "user")
    throw new AppError(Code.InvalidArgument, "USER_JID_REQUIRED", `${jid} is a group, not a user`);
  return parsed;
}

/** Parses a group JID; anything else fails INVALID_ARGUMENT (GROUP_JID_REQUIRED). */
export function parseGroupJid(jid: string): string {
  const parsed = parseJid(jid);
  if (parsed.kind !== "group")
    throw new AppError(Code.InvalidArgument, "GROUP_JID_REQUIRED", `${jid} is not a group JID`);
  return parsed.groupId;
}

/**
 * Renders a handle (and optionally a device) as a JID. Throws INVALID_ARGUMENT (INVALID_HANDLE)
 * for a handle no JID can name (an unknown app).
 */
export function formatUserJid(handle: Handle, device?: number): string {
  const suffix = device === undefined ? "" : `:${device}`;
  switch (handle.app) {
    case App.WHATSAPP:
      return `${handle.value.replace(/^\+/, "")}${suffix}@${WHATSAPP_SERVER}`;
    case App.MESSENGER:
      return `${handle.value}${suffix}@${MESSENGER_SERVER}`;
    case App.INSTAGRAM:
      return `${handle.value}${suffix}@${INSTAGRAM_SERVER}`;
    case App.THIRD_PARTY:
      return `${handle.value}${suffix}@${handle.providerId}${PROVIDER_SUFFIX}`;
    default:
      throw new AppError(Code.InvalidArgument, "INVALID_HANDLE", `handle of app ${handle.app} has no JID`);
  }
}

/** Renders a group id as `<uuid>@g.us`. */
export function formatGroupJid(groupId: string): string {
  return `${groupId}@${GROUP_SERVER}`;
}

/** Renders a parsed JID. */
export function formatJid(jid: Jid): string {
  return jid.kind === "group" ? formatGroupJid(jid.groupId) : formatUserJid(jid.handle, jid.device);
}

/** A stable map key for a handle (app, provider, value). */
export function handleKey(handle: Handle): string {
  return `${handle.app}|${handle.providerId}|${handle.value}`;
}

/** The user JID of a phone number (E.164), e.g. "+15551234567" → "15551234567@s.whatsapp.net". */
export function phoneJid(phone: string, device?: number): string {
  return formatUserJid(newHandle({ app: App.WHATSAPP, value: phone }), device);
}
