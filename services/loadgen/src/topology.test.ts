import { describe, expect, test } from "vitest";
import { apportion, createTopology } from "./topology.js";

describe("createTopology", () => {
  test("splits accounts by the mix and pairs every account", () => {
    const t = createTopology({
      devices: 101,
      devicesPerAccount: 1,
      mix: [
        { app: "whatsapp", weight: 40 },
        { app: "messenger", weight: 30 },
        { app: "instagram", weight: 30 },
      ],
      groups: 3,
      groupSize: 10,
      seed: 1,
    });
    expect(t.devices).toHaveLength(101);
    const count = (app: string) => t.accounts.filter((a) => a.app === app).length;
    expect([count("whatsapp"), count("messenger"), count("instagram")]).toEqual([41, 30, 30]);
    for (const a of t.accounts) expect(a.partner).not.toBe(a.index);
    const mutual = t.accounts.filter((a) => t.accounts[a.partner]?.partner === a.index);
    expect(mutual).toHaveLength(100);
    expect(t.groups.map((g) => new Set(g.members).size)).toEqual([10, 10, 10]);
  });

  test("gives accounts several devices and is deterministic per seed", () => {
    const opts = {
      devices: 10,
      devicesPerAccount: 3,
      mix: [{ app: "whatsapp" as const, weight: 1 }],
      groups: 1,
      groupSize: 2,
      seed: 7,
    };
    const t = createTopology(opts);
    expect(t.accounts.map((a) => a.devices.length)).toEqual([3, 3, 3, 1]);
    expect(t.devices.map((d) => d.deviceId)).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
    expect(createTopology(opts)).toEqual(t);
  });
});

describe("apportion", () => {
  test("adds up exactly", () => {
    expect(apportion(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(apportion(7, [0, 1])).toEqual([0, 7]);
  });
});
