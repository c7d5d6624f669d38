// How verification codes reach users: a pluggable sender (SMS in production; logs in development).
import type { Logger } from "pino";
import { maskPhone } from "../domain/secrets.js";

/** Delivers a verification code to a phone number. Throw an AppError (e.g. UNAVAILABLE) on failure. */
export interface CodeSender {
  send(phone: string, code: string): Promise<void>;
}

/**
 * A development sender: logs each code at info with the number masked except its last four
 * digits, and remembers the last code per number for the dev admin endpoint (`lastCode`).
 * Never use it where real users register.
 */
export interface DevCodeSender extends CodeSender {
  /** The last code sent to a number, if any. */
  lastCode(phone: string): { code: string; sentAtMs: number } | undefined;
}

const MAX_REMEMBERED = 10_000;

/** Creates the development sender. */
export function createDevCodeSender(log: Logger): DevCodeSender {
  const last = new Map<string, { code: string; sentAtMs: number }>();
  return {
    async send(phone, code) {
      last.delete(phone);
      last.set(phone, { code, sentAtMs: Date.now() });
      if (last.size > MAX_REMEMBERED) {
        const oldest = last.keys().next().value;
        if (oldest !== undefined) last.delete(oldest);
      }
      log.info({ phone: maskPhone(phone), verificationCode: code }, "verification code (development sender)");
    },
    lastCode: (phone) => last.get(phone),
  };
}
