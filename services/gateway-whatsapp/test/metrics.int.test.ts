import { createDeliveryLink } from "@switchboard/delivery-link";
import { describe, expect, onTestFinished, test } from "vitest";
import { buildApp } from "../src/app.js";
import { createWaDatabase } from "../src/storage/database.js";
import { openChat, registerPhone, startStack, testLog, textTo, TOKENS, userJid } from "./harness.js";

/** The value of one sample line (`name{labels} value`) in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("metrics", () => {
  test("count live chat streams and messages sent and delivered by app", async () => {
    const stack = await startStack();
    const alice = await registerPhone(stack);
    const bob = await registerPhone(stack);
    const a = openChat(alice);
    const b = openChat(bob);
    await a.until(() => a.drained() === 1);
    await b.until(() => b.drained() === 1);
    const devices = [{ jid: bob.jid, registrationId: bob.registrationId }];
    await a.send(textTo({ jid: userJid(bob.jid), devices }, "hello bob", "m-1"));
    await b.until(() => b.messages().length === 1);
    // Alice's server receipt is delivered too, and not counted as a message.
    await a.until(() => a.receipts().length === 1);

    const text = await stack.gateway.metrics.registry.metrics();
    expect(sample(text, 'switchboard_gateway_connections{app="whatsapp"}')).toBe(2);
    expect(sample(text, 'switchboard_gateway_messages_sent_total{app="whatsapp"}')).toBe(1);
    expect(sample(text, 'switchboard_gateway_messages_delivered_total{app="whatsapp"}')).toBe(1);
  });

  test("are served with /healthz on the metrics port", async () => {
    const stack = await startStack();
    const db = createWaDatabase({ url: stack.databaseUrl });
    const link = createDeliveryLink({
      target: stack.deliveryTarget,
      appToken: TOKENS.whatsapp,
      log: testLog,
    });
    const app = buildApp({ db, link, log: testLog });
    const bound = await app.listen({ host: "127.0.0.1", port: 0, metricsPort: 0 });
    onTestFinished(async () => {
      await app.close(500);
      await link.close();
      await db.destroy();
    });
    expect(bound.metricsPort).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${bound.metricsPort}`;

    const metrics = await fetch(`${base}/metrics`);
    const text = await metrics.text();
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(text).toContain("# TYPE process_cpu_user_seconds_total counter");
    for (const name of [
      "switchboard_gateway_connections",
      "switchboard_gateway_messages_sent_total",
      "switchboard_gateway_messages_delivered_total",
    ])
      expect(text).toContain(`${name}{app="whatsapp"} 0`);
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok");
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});
