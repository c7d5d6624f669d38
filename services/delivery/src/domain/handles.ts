import { AppError, Code } from "@switchboard/errors";
import { App } from "@switchboard/proto";

/** Longest handle, in bytes, for any app. */
export const MAX_HANDLE_BYTES = 64;

const E164 = /^\+[1-9][0-9]{6,14}$/;
const NUMERIC_ID = /^[1-9][0-9]{0,19}$/;
const USERNAME = /^[a-z0-9._]{1,30}$/;
const PROVIDER_HANDLE = /^[a-z0-9._@+-]{1,64}$/;
const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

/**
 * Validates an app-native handle and returns its normalised form: E.164 for WhatsApp, a decimal
 * id for Messenger, a lower-case username for Instagram, a lower-case handle for third parties.
 * Throws INVALID_ARGUMENT (INVALID_HANDLE) otherwise.
 */
export function normalizeHandle(app: App, value: string, providerId: string): string {
  const bad = (why: string) => new AppError(Code.InvalidArgument, "INVALID_HANDLE", why);
  if (Buffer.byteLength(value) > MAX_HANDLE_BYTES) throw bad(`handle longer than ${MAX_HANDLE_BYTES} bytes`);
  if (app !== App.THIRD_PARTY && providerId !== "")
    throw bad("provider_id is only valid for APP_THIRD_PARTY");
  switch (app) {
    case App.WHATSAPP: {
      const v = value.trim();
      if (!E164.test(v))
        throw bad("a WhatsApp-style handle must be an E.164 phone number such as +15551234567");
      return v;
    }
    case App.MESSENGER: {
      if (!NUMERIC_ID.test(value)) throw bad("a Messenger-style handle must be a decimal numeric id");
      return value;
    }
    case App.INSTAGRAM: {
      const v = value.toLowerCase();
      if (!USERNAME.test(v) || v.startsWith(".") || v.endsWith(".") || v.includes(".."))
        throw bad("an Instagram-style handle must be a username of 1-30 characters [a-z0-9._]");
      return v;
    }
    case App.THIRD_PARTY: {
      if (!PROVIDER_ID.test(providerId)) throw bad("a third-party handle needs a valid provider_id");
      const v = value.toLowerCase();
      if (!PROVIDER_HANDLE.test(v)) throw bad("a third-party handle must be 1-64 characters [a-z0-9._@+-]");
      return v;
    }
    default:
      throw bad("handle.app must be set");
  }
}
