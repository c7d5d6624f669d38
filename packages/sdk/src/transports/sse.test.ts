import { describe, expect, it } from "vitest";
import { parseEventStream, type SseEvent } from "./sse.js";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(encoder.encode(c));
      controller.close();
    },
  });
}

async function collect(chunks: string[]): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const e of parseEventStream(streamOf(chunks))) out.push(e);
  return out;
}

describe("parseEventStream", () => {
  it("parses events with ids, skipping comments and retry lines", async () => {
    const events = await collect([
      "retry: 2000\n\n: keep-alive\n\n",
      'event: item\nid: 7\ndata: {"a":1}\n\n',
      "event: queue_empty\ndata: {}\n\n",
    ]);
    expect(events).toEqual([
      { event: "item", id: "7", data: '{"a":1}' },
      { event: "queue_empty", data: "{}" },
    ]);
  });

  it("reassembles events split anywhere across chunks, with CRLF and CR line ends", async () => {
    const text = 'event: item\r\nid: 1\r\ndata: {"x":\r\ndata: 2}\r\n\r\nevent: receipt\rdata: r\r\r';
    const whole = await collect([text]);
    for (let i = 1; i < text.length; i++) {
      expect(await collect([text.slice(0, i), text.slice(i)])).toEqual(whole);
    }
    expect(whole).toEqual([
      { event: "item", id: "1", data: '{"x":\n2}' },
      { event: "receipt", data: "r" },
    ]);
  });

  it("decodes multi-byte characters split between chunks and drops a trailing partial event", async () => {
    const bytes = new TextEncoder().encode("data: café\n\ndata: partial");
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, 10));
        c.enqueue(bytes.slice(10));
        c.close();
      },
    });
    const out: SseEvent[] = [];
    for await (const e of parseEventStream(stream)) out.push(e);
    expect(out).toEqual([{ event: "message", data: "café" }]);
  });
});
