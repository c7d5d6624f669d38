// The behaviour every Fanout implementation promises, written once and run against each of them.
import { randomBytes, randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import { describe, expect, onTestFinished, test } from "vitest";
import { MAX_PAYLOAD_BYTES, broadcastChannel, channelForDevice } from "../../src/index.js";
import type { DeviceKey, Fanout } from "../../src/index.js";
import { Received, bytes, receive } from "./received.js";

/** One isolated bus (a key prefix on a shared Redis, or one in-process fanout) that instances join. */
export interface ContractBus {
  /** The keyPrefix every instance of this bus uses. */
  readonly keyPrefix: string;
  /** Open another instance on this bus (a memory bus may hand out the same one). */
  connect(): Promise<Fanout>;
  /** How many connections the server counts on `channel`, where the implementation has a server. */
  serverSubscriberCount?(channel: string): Promise<number>;
}

/** Accounts spread over the hash slots: on a three-shard cluster, some land on each shard. */
export interface ContractOptions {
  newBus(): Promise<ContractBus>;
}

async function open(bus: ContractBus): Promise<Fanout> {
  const fanout = await bus.connect();
  onTestFinished(() => fanout.close());
  return fanout;
}

function device(accountId: string, deviceId = 1): DeviceKey {
  return { accountId, deviceId };
}

async function expectAppError(promise: Promise<unknown>, code: Code, reason: string): Promise<void> {
  const err: unknown = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(err).toBeInstanceOf(AppError);
  expect(err).toMatchObject({ code, reason });
}

/** Register the Fanout contract tests under `describe(name)`. */
export function describeFanoutContract(name: string, options: ContractOptions): void {
  describe(name, () => {
    test("delivers binary payloads to a subscriber in publish order", async () => {
      const bus = await options.newBus();
      const fanout = await open(bus);
      const key = device(randomUUID(), 7);
      const received = await receive(fanout, key);

      const allBytes = new Uint8Array(256).map((_, i) => i);
      const payloads = [
        allBytes,
        new Uint8Array(0),
        new Uint8Array([0xff, 0xfe, 0x00, 0xc3]), // not UTF-8
        new Uint8Array(randomBytes(MAX_PAYLOAD_BYTES)),
        allBytes.subarray(100, 110), // a view with an offset into a larger buffer
        ...Array.from({ length: 50 }, (_, i) => bytes(`event ${i}`)),
      ];
      await fanout.publish(payloads.slice(0, 20).map((payload) => ({ key, payload })));
      for (const payload of payloads.slice(20, 30)) await fanout.publish([{ key, payload }]);
      await fanout.publish(payloads.slice(30).map((payload) => ({ key, payload })));

      await received.waitForCount(payloads.length);
      expect(received.payloads).toEqual(payloads);
    });

    test("delivers events published by another instance", async () => {
      const bus = await options.newBus();
      const a = await open(bus);
      const b = await open(bus);
      const keyOnA = device(randomUUID(), 1);
      const keyOnB = device(randomUUID(), 2);
      const onA = await receive(a, keyOnA);
      const onB = await receive(b, keyOnB);

      await a.publish([{ key: keyOnB, payload: bytes("from a") }]);
      await b.publish([{ key: keyOnA, payload: bytes("from b") }]);

      await onB.waitForText("from a");
      await onA.waitForText("from b");
      expect(onB.texts()).toEqual(["from a"]);
      expect(onA.texts()).toEqual(["from b"]);
    });

    test("delivers only the subscribed device's events", async () => {
      const bus = await options.newBus();
      const fanout = await open(bus);
      const accountId = randomUUID();
      const received = await receive(fanout, device(accountId, 1));

      await fanout.publish([
        { key: device(accountId, 2), payload: bytes("other device") },
        { key: device(randomUUID(), 1), payload: bytes("other account") },
      ]);
      await fanout.publishBroadcast(bytes("broadcast"));
      await fanout.publish([{ key: device(accountId, 1), payload: bytes("mine") }]);

      await received.waitForText("mine");
      expect(received.texts()).toEqual(["mine"]);
    });

    test("stops delivery after unsubscribe, which is idempotent", async () => {
      const bus = await options.newBus();
      const a = await open(bus);
      const b = await open(bus);
      const accountId = randomUUID();
      const key = device(accountId, 1);
      const control = await receive(a, device(accountId, 2));
      const received = await receive(a, key);
      await b.publish([{ key, payload: bytes("before") }]);
      await received.waitForText("before");

      const first = received.unsubscribe();
      const second = received.unsubscribe();
      await Promise.all([first, second]);
      await received.unsubscribe();
      expect(await bus.serverSubscriberCount?.(channelForDevice(key, bus.keyPrefix))).toBeOneOf([
        0,
        undefined,
      ]);

      // The control device shares the account, hence the shard and the order of delivery.
      await b.publish([
        { key, payload: bytes("after") },
        { key: device(accountId, 2), payload: bytes("control") },
      ]);
      await control.waitForText("control");
      expect(received.texts()).toEqual(["before"]);
    });

    test("shares one server subscription between local subscribers of a key", async () => {
      const bus = await options.newBus();
      const a = await open(bus);
      const b = await open(bus);
      const key = device(randomUUID(), 3);
      const channel = channelForDevice(key, bus.keyPrefix);
      const count = () => bus.serverSubscriberCount?.(channel) ?? Promise.resolve(undefined);

      const first = await receive(a, key);
      const second = await receive(a, key);
      expect(await count()).toBeOneOf([1, undefined]);
      await b.publish([{ key, payload: bytes("both") }]);
      await first.waitForText("both");
      await second.waitForText("both");

      await first.unsubscribe();
      expect(await count()).toBeOneOf([1, undefined]);
      await b.publish([{ key, payload: bytes("second only") }]);
      await second.waitForText("second only");
      expect(first.texts()).toEqual(["both"]);

      await second.unsubscribe();
      expect(await count()).toBeOneOf([0, undefined]);
      const third = await receive(a, key);
      expect(await count()).toBeOneOf([1, undefined]);
      await b.publish([{ key, payload: bytes("resubscribed") }]);
      await third.waitForText("resubscribed");
      expect(second.texts()).toEqual(["both", "second only"]);
    });

    test("broadcasts to every instance", async () => {
      const bus = await options.newBus();
      const a = await open(bus);
      const b = await open(bus);
      const onA = new Received();
      const onB = new Received();
      await a.subscribeBroadcast(onA.handler);
      const unsubscribeB = await b.subscribeBroadcast(onB.handler);
      expect(await bus.serverSubscriberCount?.(broadcastChannel(bus.keyPrefix))).toBeOneOf([2, undefined]);

      await a.publishBroadcast(bytes("revoke 1"));
      await b.publishBroadcast(bytes("revoke 2"));
      await onA.waitForCount(2);
      await onB.waitForCount(2);
      expect(onA.texts()).toEqual(["revoke 1", "revoke 2"]);
      expect(onB.texts()).toEqual(["revoke 1", "revoke 2"]);

      await unsubscribeB();
      await b.publishBroadcast(bytes("revoke 3"));
      await onA.waitForText("revoke 3");
      expect(onB.texts()).toEqual(["revoke 1", "revoke 2"]);
    });

    test("keeps delivering to other handlers when one throws", async () => {
      const bus = await options.newBus();
      const fanout = await open(bus);
      const key = device(randomUUID(), 1);
      await fanout.subscribe(key, () => {
        throw new Error("handler bug");
      });
      const received = await receive(fanout, key);

      await fanout.publish([
        { key, payload: bytes("one") },
        { key, payload: bytes("two") },
      ]);
      await received.waitForCount(2);
      expect(received.texts()).toEqual(["one", "two"]);
    });

    test("delivers a batch of 1000 events over 50 devices in order per device", async () => {
      const bus = await options.newBus();
      const publisher = await open(bus);
      const subscriber = await open(bus);
      const keys = Array.from({ length: 10 }, () => randomUUID()).flatMap((accountId) =>
        Array.from({ length: 5 }, (_, deviceId) => device(accountId, deviceId)),
      );
      const receivers = await Promise.all(keys.map((key) => receive(subscriber, key)));

      const events = Array.from({ length: 1000 }, (_, i) => ({
        key: keys[i % keys.length] ?? device("unreachable"),
        payload: bytes(String(i)),
      }));
      await publisher.publish(events);

      await Promise.all(receivers.map((received) => received.waitForCount(20)));
      receivers.forEach((received, k) => {
        expect(received.texts()).toEqual(Array.from({ length: 20 }, (_, i) => String(i * keys.length + k)));
      });
    });

    test("rejects payloads over MAX_PAYLOAD_BYTES and invalid device keys", async () => {
      const bus = await options.newBus();
      const fanout = await open(bus);
      const tooLarge = new Uint8Array(MAX_PAYLOAD_BYTES + 1);
      const key = device(randomUUID());
      await expectAppError(
        fanout.publish([{ key, payload: tooLarge }]),
        Code.InvalidArgument,
        "FANOUT_PAYLOAD_TOO_LARGE",
      );
      await expectAppError(
        fanout.publishBroadcast(tooLarge),
        Code.InvalidArgument,
        "FANOUT_PAYLOAD_TOO_LARGE",
      );
      await expectAppError(
        fanout.publish([{ key: device(randomUUID(), 1.5), payload: bytes("x") }]),
        Code.InvalidArgument,
        "INVALID_DEVICE_KEY",
      );
      await expectAppError(
        fanout.subscribe(device("", 1), () => {}),
        Code.InvalidArgument,
        "INVALID_DEVICE_KEY",
      );
      await fanout.publish([]);
    });

    test("rejects calls after close, which is idempotent", async () => {
      const bus = await options.newBus();
      const fanout = await bus.connect();
      const key = device(randomUUID());
      const received = await receive(fanout, key);
      await Promise.all([fanout.close(), fanout.close()]);
      await fanout.close();

      await expectAppError(
        fanout.publish([{ key, payload: bytes("x") }]),
        Code.FailedPrecondition,
        "FANOUT_CLOSED",
      );
      await expectAppError(fanout.publishBroadcast(bytes("x")), Code.FailedPrecondition, "FANOUT_CLOSED");
      await expectAppError(
        fanout.subscribe(key, () => {}),
        Code.FailedPrecondition,
        "FANOUT_CLOSED",
      );
      await expectAppError(
        fanout.subscribeBroadcast(() => {}),
        Code.FailedPrecondition,
        "FANOUT_CLOSED",
      );
      await received.unsubscribe();
    });

    test("does not call resync listeners while the connection stays up", async () => {
      const bus = await options.newBus();
      const fanout = await open(bus);
      let resyncs = 0;
      const removeListener = fanout.onResync(() => resyncs++);
      const key = device(randomUUID());
      const received = await receive(fanout, key);
      await fanout.publish([{ key, payload: bytes("x") }]);
      await received.waitForText("x");
      removeListener();
      removeListener();
      expect(resyncs).toBe(0);
    });
  });
}
