// Message requests, blocks and minors through the SDK over the real delivery service.
import { App, RequestsPolicy } from "@switchboard/proto";
import { describe, expect, it } from "vitest";
import { APP_TOKEN, eventually, openClient, registerUser, startDelivery, texts, until } from "./harness.js";

let phone = 16_770_000_000 + Math.floor(Math.random() * 1_000_000) * 100;

describe("message requests (SDK)", () => {
  it("holds a stranger's messages, lists them, and decrypts them in order once accepted", async () => {
    const { target } = await startDelivery();
    const alice = await registerUser(target);
    const bob = await registerUser(target);
    await bob.client.setRequestsPolicy(RequestsPolicy.HOLD);
    bob.client.start();
    await until(bob, "queueEmpty");
    await alice.client.sendMessage(bob.accountId, { text: "first" });
    await alice.client.sendMessage(bob.accountId, { text: "second" });

    let requests = await bob.client.listMessageRequests();
    expect(requests).toHaveLength(1);
    expect(requests[0]?.peerAccountId).toBe(alice.accountId);
    expect(requests[0]?.envelopes).toHaveLength(2);
    expect(texts(bob)).toEqual([]);

    expect(await bob.client.acceptMessageRequest({ peerAccountId: alice.accountId })).toEqual({
      released: 2,
    });
    await until(bob, "message", 2);
    expect(texts(bob)).toEqual(["first", "second"]);
    requests = await bob.client.listMessageRequests();
    expect(requests).toHaveLength(0);
  });

  it("blocks silently, and protects a minor registered with the age signal", async () => {
    const { target } = await startDelivery();
    const adult = await registerUser(target);
    const opened = await openClient(target);
    const { accountId: minorId } = await opened.client.registerAccount({
      handle: { app: App.WHATSAPP, value: `+${phone++}` },
      appToken: APP_TOKEN,
      minor: true,
    });
    const minor = { ...opened, accountId: minorId, deviceId: 1 };
    minor.client.start();
    await until(minor, "queueEmpty");
    const sent = await adult.client.sendMessage(minorId, { text: "hi kid" });
    expect(sent.kind).toBe("sent");
    expect(await minor.client.listMessageRequests()).toHaveLength(0);

    // The minor writes first: the adult's answer arrives; after a block, nothing more does.
    await minor.client.sendMessage(adult.accountId, { text: "hello" });
    await adult.client.sendMessage(minorId, { text: "hello back" });
    await until(minor, "message", 1);
    await minor.client.block(adult.accountId);
    expect((await adult.client.sendMessage(minorId, { text: "still there?" })).kind).toBe("sent");
    // Unblocking makes the adult a stranger again: dropped until the minor writes again.
    await minor.client.unblock(adult.accountId);
    await adult.client.sendMessage(minorId, { text: "after unblock" });
    await minor.client.sendMessage(adult.accountId, { text: "hi again" });
    await adult.client.sendMessage(minorId, { text: "welcome back" });
    await eventually(async () => expect(texts(minor)).toEqual(["hello back", "welcome back"]));
  });
});
