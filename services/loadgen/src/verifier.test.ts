import { describe, expect, test } from "vitest";
import { Verifier } from "./verifier.js";

describe("Verifier", () => {
  test("passes a run where every confirmed message arrives once, in order", () => {
    const v = new Verifier();
    v.issued(0, 1, [1], 0);
    v.issued(0, 2, [1], 0);
    v.confirmed(0, 1);
    v.confirmed(0, 2);
    expect(v.received(1, "e1", 0, 1, 0).kind).toBe("first");
    expect(v.received(1, "e2", 0, 2, 1).kind).toBe("first");
    const r = v.report();
    expect(r).toMatchObject({ expectedDeliveries: 2, delivered: 2, lost: 0, duplicates: 0, reordered: 0 });
    expect(r.passed).toBe(true);
    expect(v.outstanding).toBe(0);
  });

  test("reports a lost message", () => {
    const v = new Verifier();
    v.issued(3, 1, [7, 8], 0);
    v.confirmed(3, 1);
    v.received(7, "e1", 3, 1, 0);
    expect(v.outstanding).toBe(1);
    const r = v.report();
    expect(r.lost).toBe(1);
    expect(r.examples.lost).toEqual([{ sender: 3, seq: 1, device: 8 }]);
    expect(r.passed).toBe(false);
  });

  test("reports a duplicate under another envelope id, and not a redelivery", () => {
    const v = new Verifier();
    v.issued(0, 1, [1], 0);
    v.confirmed(0, 1);
    expect(v.received(1, "e1", 0, 1, 0).kind).toBe("first");
    expect(v.received(1, "e1", 0, 1, 0).kind).toBe("redelivery");
    expect(v.received(1, "e1-again", 0, 1, 0).kind).toBe("duplicate");
    const r = v.report();
    expect(r.redeliveries).toBe(1);
    expect(r.duplicates).toBe(1);
    expect(r.examples.duplicates[0]).toMatchObject({ sender: 0, seq: 1, device: 1, envelopeId: "e1-again" });
    expect(r.passed).toBe(false);
  });

  test("reports a reorder: a message delivered after one issued once it was confirmed", () => {
    const v = new Verifier();
    v.issued(0, 1, [1], 0);
    v.confirmed(0, 1);
    // Message 2 was issued after message 1 was confirmed: its watermark is 1.
    v.issued(0, 2, [1], 0);
    v.confirmed(0, 2);
    v.received(1, "e2", 0, 2, 1);
    v.received(1, "e1", 0, 1, 0);
    const r = v.report();
    expect(r.reordered).toBe(1);
    expect(r.examples.reordered[0]).toMatchObject({ sender: 0, seq: 1, device: 1 });
    expect(r.lost).toBe(0);
    expect(r.passed).toBe(false);
  });

  test("does not hold concurrent sends to an order", () => {
    const v = new Verifier();
    // Both issued before either had a result: watermark 0 for both.
    v.issued(0, 1, [1], 0);
    v.issued(0, 2, [1], 0);
    v.confirmed(0, 2);
    v.confirmed(0, 1);
    v.received(1, "e2", 0, 2, 0);
    v.received(1, "e1", 0, 1, 0);
    expect(v.report().reordered).toBe(0);
  });

  test("does not count a late delivery of a failed send as reordered or owed", () => {
    const v = new Verifier();
    v.issued(0, 1, [1], 0);
    v.failed(0, 1);
    v.issued(0, 2, [1], 0);
    v.confirmed(0, 2);
    v.received(1, "e2", 0, 2, 1);
    v.received(1, "e1", 0, 1, 0);
    const r = v.report();
    expect(r).toMatchObject({ reordered: 0, lost: 0, unconfirmedDeliveries: 1, expectedDeliveries: 1 });
    expect(r.passed).toBe(true);
  });

  test("counts a delivery before the send's result once it is confirmed", () => {
    const v = new Verifier();
    v.issued(0, 1, [1, 2], 0);
    v.received(1, "e1", 0, 1, 0);
    v.confirmed(0, 1);
    expect(v.outstanding).toBe(1);
    v.received(2, "e1", 0, 1, 0);
    expect(v.outstanding).toBe(0);
    expect(v.report()).toMatchObject({ delivered: 2, lost: 0 });
  });

  test("reports misrouted deliveries and envelope id collisions", () => {
    const v = new Verifier();
    v.issued(0, 1, [1], 0);
    v.issued(0, 2, [1], 0);
    v.confirmed(0, 1);
    v.confirmed(0, 2);
    expect(v.received(9, "e1", 0, 1, 0).kind).toBe("misrouted");
    v.received(1, "e1", 0, 1, 0);
    expect(v.received(1, "e1", 0, 2, 0).kind).toBe("duplicate");
    expect(v.received(1, "x", 5, 5, 0).kind).toBe("unknown");
    const r = v.report();
    expect(r).toMatchObject({ misrouted: 1, idCollisions: 1, unrecognized: 1, lost: 1 });
  });

  test("fails on a server receipt for a send that asked for none", () => {
    const v = new Verifier();
    v.issued(0, 1, [1], 0);
    v.confirmed(0, 1);
    v.received(1, "e1", 0, 1, 0);
    expect(v.report()).toMatchObject({ unwantedReceipts: 0, passed: true });
    v.unwantedReceipt();
    expect(v.report()).toMatchObject({ unwantedReceipts: 1, passed: false });
  });

  test("finds recipients of large groups", () => {
    const v = new Verifier();
    const members = Array.from({ length: 100 }, (_, i) => i + 1);
    v.issued(0, 1, members, 5);
    v.confirmed(0, 1);
    for (const d of members)
      expect(v.received(d, "g1", 0, 1, 0)).toEqual({ kind: "first", sentAt: 5, complete: d === 100 });
    expect(v.report()).toMatchObject({ expectedDeliveries: 100, delivered: 100, passed: true });
  });

  test("says when a confirmed send has reached every recipient, whichever came last", () => {
    const v = new Verifier();
    v.issued(0, 1, [1, 2], 0);
    expect(v.received(1, "a", 0, 1, 0)).toMatchObject({ kind: "first", complete: false });
    expect(v.received(2, "b", 0, 1, 0)).toMatchObject({ kind: "first", complete: false }); // not confirmed yet
    expect(v.confirmed(0, 1)).toBe(true); // the result came after both deliveries
    v.issued(0, 2, [1, 2], 0);
    expect(v.confirmed(0, 2)).toBe(false);
    expect(v.received(2, "c", 0, 2, 0)).toMatchObject({ complete: false });
    expect(v.received(2, "c", 0, 2, 0).kind).toBe("redelivery");
    expect(v.received(1, "d", 0, 2, 0)).toMatchObject({ complete: true });
    v.issued(0, 3, [1], 0);
    v.failed(0, 3);
    expect(v.received(1, "e", 0, 3, 0)).toMatchObject({ complete: false }); // a failed send never completes
  });
});
