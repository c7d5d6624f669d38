// A Server-Sent Events parser over a fetch body stream (WHATWG event-stream format).

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, or "message" when none was given. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The `id:` field of this event, if any. */
  id?: string;
}

/**
 * Yields the events of an event stream as they complete. Comment lines are skipped; lines may end
 * in LF, CR or CRLF and be split anywhere across chunks. Events without data are not dispatched.
 * Ends when the stream ends (a trailing incomplete event is dropped, as the format requires).
 */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let id: string | undefined;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (;;) {
        const end = buffer.search(/[\r\n]/);
        if (end < 0) break;
        // A CR at the end of the buffer may be the first half of a CRLF: wait for the next chunk.
        if (buffer[end] === "\r" && end === buffer.length - 1 && !done) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1));
        if (line === "") {
          if (data.length > 0) {
            const out: SseEvent = { event: event === "" ? "message" : event, data: data.join("\n") };
            if (id !== undefined) out.id = id;
            yield out;
          }
          event = "";
          data = [];
          id = undefined;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
        if (field === "event") event = fieldValue;
        else if (field === "data") data.push(fieldValue);
        else if (field === "id") id = fieldValue;
      }
      if (done) return;
    }
  } finally {
    // Leaving early (close, break) cancels the response body.
    await reader.cancel().catch(() => undefined);
  }
}
