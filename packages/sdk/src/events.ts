// What a client reports to the application, and a small typed emitter for it.
import type { App, content } from "@switchboard/proto";

/** Where an incoming item came from and how the server handled it. */
export interface EnvelopeMeta {
  /** Server message id (Envelope.id). */
  id: string;
  /** The sending device (for a server delivery receipt: the acknowledging device). */
  sender: { accountId: string; deviceId: number };
  /** The sender's idempotency key for the message. */
  clientMessageId: string;
  /** Commit time at the server, ms since epoch. */
  serverTimestampMs: number;
  /** The sender's clock, ms since epoch. */
  clientTimestampMs: number;
  /** Group id for group messages, else undefined. */
  groupId: string | undefined;
  ephemeral: boolean;
  urgent: boolean;
  forwarded: boolean;
  /**
   * The sender's app as the server knows it (App.THIRD_PARTY for a third-party provider's user;
   * APP_UNSPECIFIED for sealed sender). Show third-party senders as such (docs/interop.md).
   */
  sourceApp: App;
  /** For sourceApp = App.THIRD_PARTY: the sender's provider id ("acme"); else "". */
  sourceProviderId: string;
  /** Sent with sealed sender: the server did not know the sender; `sender` comes from its certificate. */
  sealedSender: boolean;
  /** Message franking: the sender's commitment (Envelope.report_tag); empty if not franked. */
  reportTag: Uint8Array;
  /** Message franking: the server's tag (Envelope.server_franking_tag); empty if not franked. */
  serverFrankingTag: Uint8Array;
  /** Sealed sender: the sender certificate (libsignal bytes), needed to report the message. */
  senderCertificate?: Uint8Array;
}

/** Events a SwitchboardClient emits, by name. */
export interface ClientEvents {
  /** A chat message from another account (one-to-one or group). */
  message: { meta: EnvelopeMeta; message: content.DataMessage };
  /**
   * A message another device of this account sent: a SyncMessage copy of a one-to-one message
   * (`destinationAccountId` set), or that device's own group message (`destinationAccountId` unset).
   */
  sync: { meta: EnvelopeMeta; destinationAccountId: string | undefined; message: content.DataMessage };
  /** An end-to-end delivery or read receipt. */
  receipt: { meta: EnvelopeMeta; receipt: content.ReceiptMessage };
  /** A typing indicator. */
  typing: { meta: EnvelopeMeta; typing: content.TypingMessage };
  /**
   * The server reports that a recipient device acknowledged a message this device sent
   * (`meta.clientMessageId` names the message, `meta.sender` the acknowledging device).
   */
  deliveryReceipt: { meta: EnvelopeMeta };
  /**
   * A peer device's identity key changed (reinstall, or an attack): show the new safety number
   * and ask the user to re-verify. The new key is already in use.
   */
  identityChanged: { accountId: string; deviceId: number; safetyNumber: string };
  /** An envelope could not be decrypted or parsed; it was acknowledged and dropped. */
  decryptionFailed: { meta: EnvelopeMeta; error: unknown };
  /** The queued backlog has been processed; later envelopes arrive live. */
  queueEmpty: Record<string, never>;
  /** A background failure (connection lost, key refill failed, a listener threw, a sync copy failed). */
  error: { error: unknown; context: string };
}

/** A listener; a returned promise is awaited before the next event is emitted. */
export type Listener<T> = (event: T) => void | Promise<void>;

/** Typed listeners, called in registration order; listener failures become `error` events. */
export class Emitter<E extends { error: { error: unknown; context: string } }> {
  private readonly listeners = new Map<keyof E, Set<Listener<never>>>();

  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  async emit<K extends keyof E>(event: K, payload: E[K]): Promise<void> {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        await (listener as Listener<E[K]>)(payload);
      } catch (error) {
        // A failing listener must not stop delivery to the others; report it unless it is
        // itself an error listener (which would loop).
        if (event !== "error") await this.emit("error", { error, context: `listener for ${String(event)}` });
      }
    }
  }
}
