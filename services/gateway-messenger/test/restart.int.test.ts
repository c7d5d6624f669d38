import { randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import {
  api,
  createBackend,
  fakeBody,
  openStream,
  signup,
  sleep,
  startDelivery,
  startGateway,
  textOf,
  type Gateway,
  type TestUser,
} from "./harness.js";

/** Sends until the gateway's link is back (503 LINK_RECONNECTING while it reconnects); same mid every try. */
async function sendRetrying(gw: Gateway, from: TestUser, to: TestUser, text: string) {
  const mid = randomUUID();
  for (let attempt = 0; attempt < 100; attempt++) {
    const r = await api(gw, "POST", "/v1/me/messages", {
      token: from.token,
      body: {
        recipient: { id: to.userId },
        message: {
          mid,
          ciphertexts: [
            { device_id: 1, registration_id: to.registrationId, type: "ciphertext", body: fakeBody(text) },
          ],
        },
      },
    });
    if (r.status === 200) return r.body;
    expect([503, 504]).toContain(r.status);
    await sleep(100);
  }
  throw new Error("the gateway never reconnected");
}

describe("delivery restarts", () => {
  test("sockets stay open across a delivery restart; nothing is lost or duplicated", async () => {
    const backend = await createBackend();
    const first = await startDelivery(backend);
    const gateway = await startGateway(first.target, backend.gatewayDb);
    const a = await signup(gateway);
    const b = await signup(gateway);
    // b holds one message without acknowledging it across the restart.
    const bStream = await openStream(gateway, b, { autoAck: false });
    await sendRetrying(gateway, a, b, "before");
    await bStream.until(() => bStream.messages().length === 1);

    await first.stop();
    const second = await startDelivery(backend, first.port);
    await sendRetrying(gateway, a, b, "after");
    await bStream.until(() => bStream.messages().some((m) => textOf(m) === "after"), 15_000);
    // The link re-drained b's queue: "before" came again from the delivery service, and the
    // gateway did not forward it twice because the socket still holds it unacknowledged.
    expect(bStream.messages().map(textOf)).toEqual(["before", "after"]);
    expect(bStream.events.filter((e) => e.type === "queue_empty").length).toBeGreaterThanOrEqual(2);
    expect(bStream.closeCode).toBeUndefined();

    bStream.ack(bStream.messages().map((m) => m.server_id));
    await sleep(300);
    await bStream.close();
    const again = await openStream(gateway, b);
    await again.until(() => again.events.some((e) => e.type === "queue_empty"));
    expect(again.messages()).toHaveLength(0);
    await second.stop();
  });
});
