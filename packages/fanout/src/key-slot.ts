/** Number of hash slots in a Redis Cluster. */
export const CLUSTER_SLOT_COUNT = 16_384;

const CRC16_TABLE = buildCrc16Table();

function buildCrc16Table(): Uint16Array {
  // CRC-16/XMODEM (polynomial 0x1021, initial value 0), the one Redis Cluster uses.
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    }
    table[byte] = crc & 0xffff;
  }
  return table;
}

function crc16(bytes: Uint8Array, start: number, end: number): number {
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ (bytes[i] ?? 0)) & 0xff] ?? 0);
  }
  return crc;
}

/**
 * The Redis Cluster hash slot (0–16383) of a key or shard channel, as `CLUSTER KEYSLOT` computes it:
 * CRC16 of the UTF-8 bytes, or of the first non-empty `{hash tag}` only.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(bytes, open + 1, close) % CLUSTER_SLOT_COUNT;
  }
  return crc16(bytes, 0, bytes.length) % CLUSTER_SLOT_COUNT;
}
