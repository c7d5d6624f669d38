// Thread ids. A one-to-one thread's id is derived from its two accounts, so both sides (and every
// gateway instance) name it alike without coordination; a group thread's id is its group id.
import { hash } from "node:crypto";
import { isUuid } from "./refs.js";

/**
 * The id of the one-to-one thread between two accounts (in either order, also an account with
 * itself): the first 16 bytes of SHA-256 over the sorted ids, as a decimal string of up to 39
 * digits, in the style of Instagram's numeric thread ids.
 */
export function directThreadId(accountA: string, accountB: string): string {
  const [x, y] = accountA <= accountB ? [accountA, accountB] : [accountB, accountA];
  // One per item sent and delivered: the one-shot `crypto.hash` (see tokens.ts), in hex at once.
  const digest = hash("sha256", `ig-direct\0${x}\0${y}`, "hex");
  return BigInt(`0x${digest.slice(0, 32)}`).toString(10);
}

/** True when `threadId` names a group thread (a group id, UUID) rather than a one-to-one thread. */
export function isGroupThreadId(threadId: string): boolean {
  return isUuid(threadId);
}

/** True when `threadId` has the shape of a one-to-one thread id. */
export function isDirectThreadId(threadId: string): boolean {
  return /^[0-9]{1,39}$/.test(threadId);
}
