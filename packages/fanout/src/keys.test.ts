import { AppError } from "@switchboard/errors";
import { describe, expect, test } from "vitest";
import { broadcastChannel, channelForDevice, checkKeyPrefix } from "./keys.js";

describe("channelForDevice", () => {
  test("hash-tags the account so all its devices share a slot", () => {
    expect(channelForDevice({ accountId: "a1", deviceId: 3 })).toBe("dev:{a1}:3");
    expect(channelForDevice({ accountId: "a1", deviceId: 0 }, "t1:")).toBe("t1:dev:{a1}:0");
  });

  test("rejects an empty account id and a non-integer or negative device id", () => {
    for (const key of [
      { accountId: "", deviceId: 1 },
      { accountId: "a", deviceId: -1 },
      { accountId: "a", deviceId: 1.5 },
      { accountId: "a", deviceId: Number.NaN },
    ]) {
      expect(() => channelForDevice(key)).toThrow(AppError);
    }
  });
});

describe("broadcastChannel", () => {
  test("is one channel per prefix", () => {
    expect(broadcastChannel()).toBe("broadcast");
    expect(broadcastChannel("t1:")).toBe("t1:broadcast");
  });
});

describe("checkKeyPrefix", () => {
  test("rejects braces, which would move the hash tag", () => {
    expect(checkKeyPrefix("sb:")).toBe("sb:");
    expect(() => checkKeyPrefix("{sb}:")).toThrow(expect.objectContaining({ reason: "INVALID_KEY_PREFIX" }));
  });
});
