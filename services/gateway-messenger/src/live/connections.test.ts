import { EventEmitter } from "node:events";
import type { DeliveryLink, DeviceListener } from "@switchboard/delivery-link";
import { App, EnvelopeType, newEnvelope } from "@switchboard/proto";
import pino from "pino";
import { afterEach, describe, expect, test } from "vitest";
import type { WebSocket } from "ws";
import type { Directory } from "../directory/directory.js";
import { createConnectionRegistry, type ConnectionRegistry } from "./connections.js";

/** A WebSocket stand-in that records what is sent, into the same log as the transport's corks. */
class FakeSocket extends EventEmitter {
  readyState = 1;
  bufferedAmount = 0;
  constructor(
    private readonly log: string[],
    private readonly name: string,
  ) {
    super();
  }
  send(text: string) {
    this.log.push(`${this.name} ${(JSON.parse(text) as { type: string }).type}`);
  }
  ping() {}
  pause() {}
  resume() {}
  close() {}
  terminate() {}
}

function setup() {
  const log: string[] = [];
  const listeners = new Map<string, DeviceListener>();
  const link = {
    subscribe(device: { accountId: string; deviceId: number }, listener: DeviceListener) {
      listeners.set(device.accountId, listener);
      return { ack: async () => {}, close: async () => {} };
    },
  } as unknown as DeliveryLink;
  const directory = { handleOf: async () => undefined } as unknown as Directory;
  const registry = createConnectionRegistry({
    link,
    directory,
    log: pino({ level: "silent" }),
    heartbeatMs: 3_600_000,
  });
  const connect = (name: string) => {
    const socket = new FakeSocket(log, name);
    registry.attach(
      socket as unknown as WebSocket,
      { accountId: name, deviceId: 1 },
      {
        window: 0,
        sends: { submit: () => Promise.reject(new Error("no sends here")) },
        transport: {
          writableLength: 0,
          cork: () => log.push(`${name} cork`),
          uncork: () => log.push(`${name} uncork`),
        },
      },
    );
    return (id: string, type = EnvelopeType.CIPHERTEXT) =>
      listeners.get(name)!.onEnvelope(
        newEnvelope({
          id,
          type,
          source: { accountId: "sender", deviceId: 1 },
          sourceApp: App.MESSENGER,
          destination: { accountId: name, deviceId: 1 },
          destinationApp: App.MESSENGER,
          content: new Uint8Array([1]),
          sequence: 1n,
        }),
      );
  };
  return { log, registry, connect };
}

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Until the writes of this tick are released (their uncork is queued after this call's first immediate). */
const nextTick = async () => {
  await immediate();
  await immediate();
};

let registry: ConnectionRegistry | undefined;
afterEach(() => registry?.close());

describe("connection writes", () => {
  test("frames for one socket in one tick share a write: corked before the first, uncorked after the tick", async () => {
    const s = setup();
    registry = s.registry;
    const deliverToA = s.connect("a");
    deliverToA("m1");
    deliverToA("r1", EnvelopeType.SERVER_DELIVERY_RECEIPT);
    await nextTick();
    expect(s.log).toEqual(["a cork", "a message", "a delivery", "a uncork"]);

    // A later tick corks again.
    s.log.length = 0;
    deliverToA("m2");
    await nextTick();
    expect(s.log).toEqual(["a cork", "a message", "a uncork"]);
  });

  test("each socket written in a tick is corked once and uncorked once", async () => {
    const s = setup();
    registry = s.registry;
    const toA = s.connect("a");
    const toB = s.connect("b");
    toA("m1");
    toB("m2");
    toA("m3");
    await nextTick();
    expect(s.log.filter((l) => l.endsWith("cork")).sort()).toEqual([
      "a cork",
      "a uncork",
      "b cork",
      "b uncork",
    ]);
    expect(s.log.indexOf("a uncork")).toBeGreaterThan(s.log.lastIndexOf("a message"));
    expect(s.log.indexOf("b uncork")).toBeGreaterThan(s.log.lastIndexOf("b message"));
    expect(s.log.filter((l) => l === "a message")).toHaveLength(2);
  });
});
