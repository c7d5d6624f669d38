import { randomUUID } from "node:crypto";
import { EnvelopeType, type ConnectResponse } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { FRAME_BATCHING_METADATA } from "../src/rpc/message-service.js";
import { clientsFor, createBackend, registerAccount, startInstance, type TestDevice } from "./harness.js";

/** Collects a stream's frames in the background; `until` waits (up to 10 s) for a condition. */
function collect(responses: AsyncIterable<ConnectResponse>) {
  const frames: ConnectResponse[] = [];
  void (async () => {
    for await (const f of responses) frames.push(f);
  })().catch(() => undefined); // cancelled at the end
  return {
    frames,
    until: async (done: () => boolean) => {
      for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(done()).toBe(true);
    },
  };
}

const flat = (frames: ConnectResponse[]) =>
  frames.flatMap((f) => (f.frame.case === "batch" ? f.frame.value.frames : [f]));

const sendFrame = (from: TestDevice, to: TestDevice, n: number) => ({
  frame: {
    case: "send" as const,
    value: {
      correlationId: BigInt(n),
      request: {
        destinationAccountId: to.accountId,
        messages: [
          {
            deviceId: to.deviceId,
            registrationId: to.registrationId,
            type: EnvelopeType.CIPHERTEXT,
            content: Buffer.from(`m${n}`),
          },
        ],
        clientMessageId: randomUUID(),
        clientTimestampMs: BigInt(n),
      },
    },
  },
});

describe("Connect frame batching", () => {
  test("a ConnectRequestBatch is handled frame by frame in order; opted-in clients get ConnectResponseBatch frames", async () => {
    const backend = await createBackend();
    const { target } = await startInstance(backend);
    const alice = await registerAccount(target);
    const bob = await registerAccount(target);
    const N = 40;

    // Alice sends N messages in one batch frame, without opting in to batched responses.
    const sender = clientsFor(target, alice.auth).messages.connect();
    await sender.send({
      frame: {
        case: "batch",
        value: { frames: Array.from({ length: N }, (_, i) => sendFrame(alice, bob, i + 1)) },
      },
    });
    const { frames: senderFrames, until: senderUntil } = collect(sender.responses);
    await senderUntil(() => senderFrames.length >= N);
    // Not opted in: every result arrives as its own frame, none as a batch.
    expect(senderFrames.every((f) => f.frame.case === "sendResult")).toBe(true);
    expect(
      senderFrames
        .map((f) => (f.frame.case === "sendResult" ? f.frame.value.result.case : ""))
        .every((c) => c === "send"),
    ).toBe(true);
    sender.cancel();

    // Bob opts in: his backlog comes in batches, in order, and he acks it in one batch frame.
    const receiver = clientsFor(target, bob.auth).messages.connect({
      metadata: { [FRAME_BATCHING_METADATA]: "1" },
    });
    await receiver.send({
      frame: {
        case: "subscribe",
        value: { device: { accountId: bob.accountId, deviceId: 1 }, window: 1000 },
      },
    });
    const { frames, until } = collect(receiver.responses);
    await until(() => flat(frames).some((f) => f.frame.case === "queueEmpty"));
    expect(frames.some((f) => f.frame.case === "batch")).toBe(true);
    const envelopes = flat(frames).flatMap((f) => (f.frame.case === "delivery" ? [f.frame.value] : []));
    expect(envelopes.map((e) => Buffer.from(e.content).toString())).toEqual(
      Array.from({ length: N }, (_, i) => `m${i + 1}`),
    );
    await receiver.send({
      frame: {
        case: "batch",
        value: {
          frames: envelopes.map((e) => ({
            frame: {
              case: "ack" as const,
              value: { device: { accountId: bob.accountId, deviceId: 1 }, messageIds: [e.id] },
            },
          })),
        },
      },
    });
    const queued = async () =>
      Number(
        (
          await backend.db
            .selectFrom("queued_messages")
            .select((eb) => eb.fn.countAll().as("n"))
            .where("account_id", "=", bob.accountId)
            .executeTakeFirstOrThrow()
        ).n,
      );
    for (let i = 0; i < 100 && (await queued()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await queued()).toBe(0);
    receiver.cancel();
  });

  test("a batch inside a batch, or one over 1,000 frames, is refused with a frame error and nothing is sent", async () => {
    const backend = await createBackend();
    const { target } = await startInstance(backend);
    const alice = await registerAccount(target);
    const bob = await registerAccount(target);
    const stream = clientsFor(target, alice.auth).messages.connect();
    await stream.send({
      frame: {
        case: "batch",
        value: { frames: [{ frame: { case: "batch", value: { frames: [sendFrame(alice, bob, 1)] } } }] },
      },
    });
    await stream.send({
      frame: {
        case: "batch",
        value: { frames: Array.from({ length: 1001 }, (_, i) => sendFrame(alice, bob, i + 2)) },
      },
    });
    const { frames, until } = collect(stream.responses);
    await until(() => frames.length >= 2);
    expect(
      frames.map((f) => (f.frame.case === "frameError" ? f.frame.value.error?.reason : f.frame.case)),
    ).toEqual(["NESTED_BATCH", "BATCH_TOO_LARGE"]);
    stream.cancel();
    const n = await backend.db
      .selectFrom("queued_messages")
      .select((eb) => eb.fn.countAll().as("n"))
      .executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(0);
  });
});
