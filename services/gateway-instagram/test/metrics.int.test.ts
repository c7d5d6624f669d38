import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { api, b64, openEvents, signUp, startStack, type IgUser } from "./harness.js";

/** The value of one sample line (`name{labels} value`) in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics", () => {
  it("exposes default metrics, live connections and messages sent and delivered by app", async () => {
    const { gateway } = await startStack();
    const ada = await signUp(gateway.url);
    const bob = await signUp(gateway.url);
    // Bob opens the thread first, which accepts Ada: her item goes straight to his event stream.
    const openThread = (from: IgUser, to: IgUser) =>
      api<{ thread_id: string }>(gateway.url, "POST", "/v1/direct/threads", {
        token: from.token,
        body: { recipients: [to.username] },
      });
    expect((await openThread(bob, ada)).status).toBe(200);
    const thread = await openThread(ada, bob);
    expect(thread.status).toBe(200);
    const events = await openEvents(gateway.url, bob.token);
    await events.until((e) => e.some((x) => x.event === "queue_empty"));
    const sent = await api(gateway.url, "POST", `/v1/direct/threads/${thread.body.thread_id}/items`, {
      token: ada.token,
      body: {
        client_context: randomUUID(),
        ciphertexts: [
          { device_id: 1, registration_id: bob.registrationId, type: "ciphertext", body: b64("hi") },
        ],
      },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    await events.until(() => events.items().length === 1);

    const res = await fetch(`${gateway.url}/metrics`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(text).toContain("# TYPE process_cpu_user_seconds_total counter");
    expect(sample(text, 'switchboard_gateway_connections{app="instagram"}')).toBe(1);
    expect(sample(text, 'switchboard_gateway_messages_sent_total{app="instagram"}')).toBe(1);
    expect(sample(text, 'switchboard_gateway_messages_delivered_total{app="instagram"}')).toBe(1);
  });
});
