import { describe, expect, test } from "vitest";
import { checkDeviceList } from "./device-list.js";

const d = (deviceId: number, registrationId: number) => ({ deviceId, registrationId });

describe("checkDeviceList", () => {
  test("accepts an exact match", () => {
    expect(checkDeviceList([d(1, 10), d(2, 20)], [d(2, 20), d(1, 10)])).toEqual({ kind: "ok" });
  });

  test("reports missing and extra devices", () => {
    expect(checkDeviceList([d(1, 10), d(3, 30)], [d(1, 10), d(2, 20)])).toEqual({
      kind: "mismatched",
      missing: [3],
      extra: [2],
    });
  });

  test("reports stale registration ids when the device set matches", () => {
    expect(checkDeviceList([d(1, 10), d(2, 21)], [d(1, 10), d(2, 20)])).toEqual({
      kind: "stale",
      stale: [2],
    });
  });

  test("a device addressed twice counts once, with the last registration id given", () => {
    expect(checkDeviceList([d(1, 10)], [d(1, 10), d(1, 10)])).toEqual({ kind: "ok" });
    expect(checkDeviceList([d(1, 10)], [d(1, 10), d(1, 11)])).toEqual({ kind: "stale", stale: [1] });
    expect(checkDeviceList([d(1, 10), d(2, 20)], [d(1, 10), d(1, 10)])).toEqual({
      kind: "mismatched",
      missing: [2],
      extra: [],
    });
  });

  test("an empty device list matches only an empty account", () => {
    expect(checkDeviceList([], [])).toEqual({ kind: "ok" });
    expect(checkDeviceList([d(1, 10)], [], 1)).toEqual({ kind: "ok" });
    expect(checkDeviceList([d(1, 10)], [])).toEqual({ kind: "mismatched", missing: [1], extra: [] });
  });

  test("ignores the sending device when syncing to its own account", () => {
    expect(checkDeviceList([d(1, 10), d(2, 20)], [d(2, 20)], 1)).toEqual({ kind: "ok" });
    expect(checkDeviceList([d(1, 10), d(2, 20)], [d(1, 10), d(2, 20)], 1)).toEqual({
      kind: "mismatched",
      missing: [],
      extra: [1],
    });
  });
});
