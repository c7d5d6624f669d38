import { randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import { api, fakeBody, openStream, signup, startStack } from "./harness.js";

/** The value of one sample line (`name{labels} value`) in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics", () => {
  test("exposes default metrics, live connections and messages sent and delivered by app", async () => {
    const { gateway } = await startStack();
    const a = await signup(gateway);
    const b = await signup(gateway);
    const stream = await openStream(gateway, b);
    await stream.until(() => stream.events.some((e) => e.type === "queue_empty"));
    const sent = await api(gateway, "POST", "/v1/me/messages", {
      token: a.token,
      body: {
        recipient: { id: b.userId },
        message: {
          mid: randomUUID(),
          ciphertexts: [
            { device_id: 1, registration_id: b.registrationId, type: "ciphertext", body: fakeBody("hi") },
          ],
        },
      },
    });
    expect(sent.status).toBe(200);
    await stream.until(() => stream.messages().length === 1);

    const res = await fetch(`${gateway.url}/metrics`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(text).toContain("# TYPE process_cpu_user_seconds_total counter");
    expect(sample(text, 'switchboard_gateway_connections{app="messenger"}')).toBe(1);
    expect(sample(text, 'switchboard_gateway_messages_sent_total{app="messenger"}')).toBe(1);
    expect(sample(text, 'switchboard_gateway_messages_delivered_total{app="messenger"}')).toBe(1);
  });
});
