import { randomFillSync } from "node:crypto";

/** Random bytes per request id (rendered as 8 base64url characters). */
const ID_BYTES = 6;
/** Ids drawn from one refill of the random buffer. */
const IDS_PER_REFILL = 512;

/**
 * Creates a fastify `genReqId`: `req-` and 8 random base64url characters, as before, but drawn
 * from a buffer refilled with 3 KiB of CSPRNG output every 512 ids instead of one `randomBytes`
 * call per request (which cost about 1.5% of a gateway's CPU under load).
 */
export function createRequestIds(): () => string {
  const pool = Buffer.allocUnsafe(ID_BYTES * IDS_PER_REFILL);
  let offset = pool.length;
  return () => {
    if (offset === pool.length) {
      randomFillSync(pool);
      offset = 0;
    }
    const id = pool.toString("base64url", offset, offset + ID_BYTES);
    offset += ID_BYTES;
    return `req-${id}`;
  };
}
