import { expect, vi } from "vitest";
import type { DeviceKey, Fanout } from "../../src/index.js";

/** Payloads a handler received, as copies, with helpers to wait for them. */
export class Received {
  readonly payloads: Uint8Array[] = [];

  readonly handler = (payload: Uint8Array): void => {
    this.payloads.push(new Uint8Array(payload));
  };

  /** The payloads decoded as UTF-8 text. */
  texts(): string[] {
    return this.payloads.map((payload) => Buffer.from(payload).toString("utf8"));
  }

  /** Wait until at least `count` payloads arrived. */
  async waitForCount(count: number, timeoutMs = 10_000): Promise<void> {
    await vi.waitFor(() => expect(this.payloads.length).toBeGreaterThanOrEqual(count), {
      timeout: timeoutMs,
      interval: 5,
    });
  }

  /** Wait until a payload with this text arrived. */
  async waitForText(text: string, timeoutMs = 10_000): Promise<void> {
    await vi.waitFor(() => expect(this.texts()).toContain(text), { timeout: timeoutMs, interval: 5 });
  }
}

/** Subscribe a fresh {@link Received} to `key`; returns it with its unsubscribe function. */
export async function receive(
  fanout: Fanout,
  key: DeviceKey,
): Promise<Received & { unsubscribe: () => Promise<void> }> {
  const received = new Received();
  const unsubscribe = await fanout.subscribe(key, received.handler);
  return Object.assign(received, { unsubscribe });
}

/** UTF-8 bytes of `text`. */
export function bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "utf8"));
}
