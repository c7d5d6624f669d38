// fast-check arbitraries for handles, JIDs and chat frames (test support, not shipped).
import { create } from "@bufbuild/protobuf";
import { App, HandleSchema, whatsapp, type Handle } from "@switchboard/proto";
import fc from "fast-check";

export const uuid = fc.uuid().map((u) => u.toLowerCase());

const segment = fc.stringMatching(/^[a-z0-9_]{1,8}$/);

export const handleArb: fc.Arbitrary<Handle> = fc.oneof(
  fc
    .stringMatching(/^[1-9][0-9]{6,14}$/)
    .map((d) => create(HandleSchema, { app: App.WHATSAPP, value: `+${d}` })),
  fc.stringMatching(/^[1-9][0-9]{0,19}$/).map((v) => create(HandleSchema, { app: App.MESSENGER, value: v })),
  fc
    .array(segment, { minLength: 1, maxLength: 4 })
    .map((s) => s.join("."))
    .filter((v) => v.length <= 30)
    .map((v) => create(HandleSchema, { app: App.INSTAGRAM, value: v })),
  fc
    .tuple(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,31}$/), fc.stringMatching(/^[a-z0-9._@+-]{1,64}$/))
    .map(([providerId, value]) => create(HandleSchema, { app: App.THIRD_PARTY, value, providerId })),
);

export const deviceArb = fc.integer({ min: 1, max: 1_000_000 });
export const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
export const uint64 = fc.bigInt({ min: 0n, max: 2n ** 63n - 1n });
export const bytes = fc.uint8Array({ maxLength: 48 });
export const registrationId = fc.integer({ min: 0, max: 16380 });
export const clientId = fc.string({ minLength: 1, maxLength: 64 });

export const kindArb = fc.constantFrom(
  whatsapp.MessageKind.MSG,
  whatsapp.MessageKind.PKMSG,
  whatsapp.MessageKind.SKMSG,
  whatsapp.MessageKind.SEALED,
  whatsapp.MessageKind.PLAINTEXT,
);

/** Distinct handles (by app, provider and value). */
export const distinctHandles = (max: number) =>
  fc.uniqueArray(handleArb, { maxLength: max, selector: (h) => `${h.app}|${h.providerId}|${h.value}` });
