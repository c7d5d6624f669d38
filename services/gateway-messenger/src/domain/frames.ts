// Client → server WebSocket frames.
import { AppError, Code } from "@switchboard/errors";
import { isUuid } from "./users.js";

/** Most ids in one ack frame (as in the delivery API). */
export const MAX_ACK_IDS = 1000;

/** Longest `ref` of a send frame. */
export const MAX_REF_LENGTH = 64;

/**
 * A parsed client frame. A send frame is checked for its `ref` here; the rest of it is validated
 * against its JSON schema (StreamSendFrame / StreamSendGroupFrame) when it is submitted, so that a
 * bad send is answered under its ref.
 */
export type ClientFrame =
  | { type: "ack"; ids: string[] }
  | { type: "ping" }
  | { type: "send" | "send_group"; ref: string; frame: Record<string, unknown> };

const invalid = (detail: string) => new AppError(Code.InvalidArgument, "INVALID_FRAME", detail);

/**
 * Parses one text frame: `{"type":"ack","ids":[...]}` (1-1000 server ids), `{"type":"ping"}`, or a
 * `send` / `send_group` frame with a `ref` of 1-64 characters. Throws INVALID_ARGUMENT with reason
 * INVALID_JSON or INVALID_FRAME.
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
    case "send":
    case "send_group": {
      const ref = frame.ref;
      if (typeof ref !== "string" || ref.length === 0 || ref.length > MAX_REF_LENGTH)
        throw invalid(`a ${frame.type} frame needs a ref of 1-${MAX_REF_LENGTH} characters`);
      return { type: frame.type, ref, frame };
    }
    default:
      throw invalid('unknown frame type: expected "ack", "ping", "send" or "send_group"');
  }
}
