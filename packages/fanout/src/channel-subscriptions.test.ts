import { describe, expect, test, vi } from "vitest";
import { ChannelSubscriptions } from "./channel-subscriptions.js";

/** A scripted server side: which channels are subscribed, with optional manual control of each call. */
function fakeServer() {
  const subscribed = new Set<string>();
  let gate: Promise<void> | undefined;
  let failuresLeft = 0;
  return {
    subscribed,
    apply: async (channel: string, wanted: boolean) => {
      if (gate !== undefined) await gate;
      if (failuresLeft > 0) {
        failuresLeft--;
        throw new Error("server said no");
      }
      if (wanted) subscribed.add(channel);
      else subscribed.delete(channel);
    },
    /** Hold every call until the returned function is called. */
    hold(): () => void {
      let release = () => {};
      gate = new Promise((resolve) => {
        release = () => {
          gate = undefined;
          resolve();
        };
      });
      return release;
    },
    failNext(count: number) {
      failuresLeft = count;
    },
  };
}

const silentLog = { warn: vi.fn(), info: vi.fn(), debug: vi.fn() };

describe("ChannelSubscriptions", () => {
  test("keeps one server subscription while any local subscriber remains", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, silentLog);
    const first = await subscriptions.add("c", () => {});
    const second = await subscriptions.add("c", () => {});
    expect(server.subscribed).toEqual(new Set(["c"]));
    await first();
    expect(server.subscribed).toEqual(new Set(["c"]));
    await second();
    await second();
    expect(server.subscribed).toEqual(new Set());
    expect(subscriptions.channels()).toEqual([]);
  });

  test("ends subscribed when a subscribe races the last unsubscribe", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, silentLog);
    const first = await subscriptions.add("c", () => {});
    const release = server.hold();
    const unsubscribed = first();
    const received: Uint8Array[] = [];
    const subscribed = subscriptions.add("c", (payload) => received.push(payload));
    release();
    await Promise.all([unsubscribed, subscribed]);
    expect(server.subscribed).toEqual(new Set(["c"]));
    subscriptions.dispatch("c", new Uint8Array([1]));
    expect(received).toEqual([new Uint8Array([1])]);
  });

  test("stops dispatching to a handler as soon as its unsubscribe is called", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, silentLog);
    const handler = vi.fn();
    const unsubscribe = await subscriptions.add("c", handler);
    const release = server.hold();
    const done = unsubscribe();
    subscriptions.dispatch("c", new Uint8Array([1]));
    release();
    await done;
    expect(handler).not.toHaveBeenCalled();
  });

  test("rejects a subscribe that outlasts the timeout with FANOUT_UNAVAILABLE and drops its handler", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 50, silentLog);
    const release = server.hold();
    const handler = vi.fn();
    await expect(subscriptions.add("c", handler)).rejects.toMatchObject({ reason: "FANOUT_UNAVAILABLE" });
    release();
    await vi.waitFor(() => expect(server.subscribed).toEqual(new Set()));
    subscriptions.dispatch("c", new Uint8Array([1]));
    expect(handler).not.toHaveBeenCalled();
  });

  test("re-applies every wanted channel on resync, then calls the listeners once", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, silentLog);
    await subscriptions.add("a", () => {});
    await subscriptions.add("b", () => {});
    const listener = vi.fn();
    subscriptions.onResync(listener);

    subscriptions.connectionLost();
    server.subscribed.clear();
    subscriptions.requestResync();
    subscriptions.requestResync();
    await vi.waitFor(() => expect(listener).toHaveBeenCalled());
    expect(server.subscribed).toEqual(new Set(["a", "b"]));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(listener).toHaveBeenCalledTimes(1);
  });

  test("does not report a resync that overlapped another connection loss until the next one", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, silentLog);
    await subscriptions.add("a", () => {});
    const listener = vi.fn();
    subscriptions.onResync(listener);

    const release = server.hold();
    subscriptions.requestResync();
    subscriptions.connectionLost();
    release();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(listener).not.toHaveBeenCalled();

    subscriptions.requestResync();
    await vi.waitFor(() => expect(listener).toHaveBeenCalledTimes(1));
  });

  test("retries a failed resync with back-off before reporting it", async () => {
    const server = fakeServer();
    const log = { warn: vi.fn(), info: vi.fn(), debug: vi.fn() };
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, log);
    await subscriptions.add("a", () => {});
    const listener = vi.fn();
    subscriptions.onResync(listener);

    server.subscribed.clear();
    server.failNext(2);
    subscriptions.requestResync();
    await vi.waitFor(() => expect(listener).toHaveBeenCalledTimes(1), { timeout: 2_000 });
    expect(server.subscribed).toEqual(new Set(["a"]));
    expect(log.warn).toHaveBeenCalledWith(
      expect.objectContaining({ failedChannelCount: 1 }),
      "fanout resubscribe failed",
    );
  });

  test("forgets subscribers and listeners on close", async () => {
    const server = fakeServer();
    const subscriptions = new ChannelSubscriptions(server.apply, 1_000, silentLog);
    const handler = vi.fn();
    const unsubscribe = await subscriptions.add("a", handler);
    const listener = vi.fn();
    subscriptions.onResync(listener);
    subscriptions.close();
    subscriptions.dispatch("a", new Uint8Array([1]));
    subscriptions.requestResync();
    await unsubscribe();
    await expect(subscriptions.add("a", handler)).rejects.toMatchObject({ reason: "FANOUT_CLOSED" });
    expect(handler).not.toHaveBeenCalled();
    expect(listener).not.toHaveBeenCalled();
  });
});
