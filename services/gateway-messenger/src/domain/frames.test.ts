import { describe, expect, test } from "vitest";
import { parseClientFrame } from "./frames.js";

const id = "9f0c7a52-2d7b-4f64-8a8b-7f4b3c3f0f11";

describe("parseClientFrame", () => {
  test("parses ack and ping frames", () => {
    expect(parseClientFrame(JSON.stringify({ type: "ack", ids: [id] }))).toEqual({ type: "ack", ids: [id] });
    expect(parseClientFrame('{"type":"ping"}')).toEqual({ type: "ping" });
  });

  test("parses send frames by their ref, leaving the body to schema validation", () => {
    const send = { type: "send", ref: "r1", recipient: { id: "100004" }, message: {} };
    expect(parseClientFrame(JSON.stringify(send))).toEqual({ type: "send", ref: "r1", frame: send });
    const group = { type: "send_group", ref: "x".repeat(64), group_id: id };
    expect(parseClientFrame(JSON.stringify(group))).toEqual({
      type: "send_group",
      ref: "x".repeat(64),
      frame: group,
    });
  });

  test("rejects malformed frames with a reason", () => {
    expect(() => parseClientFrame("{")).toThrow(expect.objectContaining({ reason: "INVALID_JSON" }));
    for (const bad of [
      "[]",
      "1",
      '{"type":"nope"}',
      '{"type":"ack"}',
      '{"type":"ack","ids":[]}',
      '{"type":"ack","ids":["x"]}',
      '{"type":"send"}',
      '{"type":"send","ref":""}',
      '{"type":"send","ref":7}',
      `{"type":"send_group","ref":"${"x".repeat(65)}"}`,
    ]) {
      expect(() => parseClientFrame(bad)).toThrow(expect.objectContaining({ reason: "INVALID_FRAME" }));
    }
  });
});
