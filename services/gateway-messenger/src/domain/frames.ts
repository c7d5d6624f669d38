// Client → server WebSocket frames.
import { AppError, Code } from "@switchboard/errors";
import { isUuid } from "./users.js";

/** Most ids in one ack frame (as in the delivery API). */
export const MAX_ACK_IDS = 1000;

/** A parsed client frame. */
export type ClientFrame = { type: "ack"; ids: string[] } | { type: "ping" };

const invalid = (detail: string) => new AppError(Code.InvalidArgument, "INVALID_FRAME", detail);

/**
 * Parses one text frame: `{"type":"ack","ids":[...]}` (1-1000 server ids) or `{"type":"ping"}`.
 * Throws INVALID_ARGUMENT with reason INVALID_JSON or INVALID_FRAME.
 */
export function parseClientFrame(text: string): ClientFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AppError(Code.InvalidArgument, "INVALID_JSON", "a frame is one JSON object");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalid("a frame is a JSON object");
  const frame = value as Record<string, unknown>;
  switch (frame.type) {
    case "ping":
      return { type: "ping" };
    case "ack": {
      const ids = frame.ids;
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_ACK_IDS)
        throw invalid(`ack.ids must be an array of 1-${MAX_ACK_IDS} server ids`);
      for (const id of ids) {
        if (typeof id !== "string" || !isUuid(id))
          throw invalid("ack.ids must hold server_id values (UUIDs)");
      }
      return { type: "ack", ids: ids as string[] };
    }
    default:
      throw invalid('unknown frame type: expected "ack" or "ping"');
  }
}
