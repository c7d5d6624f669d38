import type { ChannelMessage } from "./channel-fanout.js";

/**
 * Wire format of a batch of channel messages carried as one pub/sub message on the events channel
 * (see keys.ts): a version byte 1, then per message a big-endian u16 channel length, the channel in
 * UTF-8, a big-endian u32 payload length and the payload. One PUBLISH (and one message on every
 * subscriber connection) per batch instead of one per device is what makes the per-message cost
 * of fanout small; subscribers dispatch each message to the local handlers of its channel.
 */
export const EVENT_BATCH_VERSION = 1;

/** Batches are cut at this many bytes, so a burst never trips Redis' pub/sub output-buffer limits. */
export const MAX_EVENT_BATCH_BYTES = 256 * 1024;

const EMPTY = Buffer.alloc(0);

/**
 * Packs messages into as few batches as possible, in order, each at most
 * {@link MAX_EVENT_BATCH_BYTES} (a single larger message gets a batch of its own).
 */
export function packEventBatches(messages: ReadonlyArray<ChannelMessage>): Buffer[] {
  const batches: Buffer[] = [];
  let start = 0;
  while (start < messages.length) {
    let size = 1;
    let end = start;
    const channels: Buffer[] = [];
    while (end < messages.length) {
      const m = messages[end] as ChannelMessage;
      const channel = Buffer.from(m.channel, "utf8");
      if (channel.byteLength > 0xffff) throw new RangeError("channel name too long");
      const add = 6 + channel.byteLength + m.payload.byteLength;
      if (end > start && size + add > MAX_EVENT_BATCH_BYTES) break;
      channels.push(channel);
      size += add;
      end++;
    }
    const out = Buffer.allocUnsafe(size);
    out[0] = EVENT_BATCH_VERSION;
    let at = 1;
    for (let i = start; i < end; i++) {
      const channel = channels[i - start] as Buffer;
      const { payload } = messages[i] as ChannelMessage;
      out.writeUInt16BE(channel.byteLength, at);
      at += 2;
      channel.copy(out, at);
      at += channel.byteLength;
      out.writeUInt32BE(payload.byteLength, at);
      at += 4;
      out.set(payload, at);
      at += payload.byteLength;
    }
    batches.push(out);
    start = end;
  }
  return batches;
}

/**
 * Calls `onMessage` for each message of a batch, in order; payloads are views into `batch`.
 * Returns false (having delivered nothing past the damage) for bytes that are not a batch.
 */
export function unpackEventBatch(
  batch: Buffer,
  onMessage: (channel: string, payload: Buffer) => void,
): boolean {
  if (batch.byteLength < 1 || batch[0] !== EVENT_BATCH_VERSION) return false;
  let at = 1;
  while (at < batch.byteLength) {
    if (at + 2 > batch.byteLength) return false;
    const channelLength = batch.readUInt16BE(at);
    at += 2;
    if (at + channelLength + 4 > batch.byteLength) return false;
    const channel = batch.toString("utf8", at, at + channelLength);
    at += channelLength;
    const payloadLength = batch.readUInt32BE(at);
    at += 4;
    if (at + payloadLength > batch.byteLength) return false;
    onMessage(channel, payloadLength === 0 ? EMPTY : batch.subarray(at, at + payloadLength));
    at += payloadLength;
  }
  return true;
}
