// Builds Envelope, Address, Handle and SendMessageRequest messages without protobuf-es reflection.
// `create(EnvelopeSchema, …)` walks the schema's fields for every message (about 3 µs an envelope
// on the machine of docs/benchmarks.md); every gateway and SDK transport builds one per message in
// each direction, and the gateways a send request per message sent, so the hot paths use these
// object literals instead. They produce what `create` does — the same fields, zero values and
// `$typeName` — which test/envelope.test.ts checks field by field against the schema, so a field
// added to the proto fails it until it is added here. One difference of shape, not of value: an
// absent message field (`source`, `destination`, `sender`) is a key holding undefined (every
// message has the same keys), where `create` leaves the key out; protobuf-es reads both as unset.
// (The delivery link's wire decoder keeps its own literal: its tests compare with protobuf-es's
// decoder key for key.)
import type { Address, Handle } from "./gen/switchboard/common/v1/identity_pb.js";
import type { Envelope } from "./gen/switchboard/common/v1/envelope_pb.js";
import type { OutgoingMessage, SendMessageRequest } from "./gen/switchboard/delivery/v1/messages_pb.js";

/** An Envelope's fields, each optional (absent fields take their zero value, as with `create`). */
export type EnvelopeInit = {
  readonly [K in Exclude<keyof Envelope, "$typeName" | "$unknown" | "source" | "destination">]?: Envelope[K];
} & {
  readonly source?: AddressInit | undefined;
  readonly destination?: AddressInit | undefined;
};

/** An Address's fields (a `$typeName` of a given Address is ignored). */
export interface AddressInit {
  readonly accountId?: string;
  readonly deviceId?: number;
}

/** A Handle's fields (a `$typeName` of a given Handle is ignored). */
export interface HandleInit {
  readonly app?: Handle["app"];
  readonly value?: string;
  readonly providerId?: string;
}

/** A SendMessageRequest's fields, each optional, its messages and sender as plain fields. */
export type SendMessageRequestInit = {
  readonly [
    K in Exclude<keyof SendMessageRequest, "$typeName" | "$unknown" | "sender" | "messages">
  ]?: SendMessageRequest[K];
} & {
  readonly sender?: AddressInit | undefined;
  readonly messages?: readonly OutgoingMessageInit[];
};

/** An OutgoingMessage's fields (one recipient device's ciphertext). */
export type OutgoingMessageInit = {
  readonly [K in Exclude<keyof OutgoingMessage, "$typeName" | "$unknown">]?: OutgoingMessage[K];
};

const EMPTY = new Uint8Array(0);

/** An Address message, as `create(AddressSchema, init)` would make it. */
export function newAddress(init: AddressInit): Address {
  return {
    $typeName: "switchboard.common.v1.Address",
    accountId: init.accountId ?? "",
    deviceId: init.deviceId ?? 0,
  };
}

/** A Handle message, as `create(HandleSchema, init)` would make it. */
export function newHandle(init: HandleInit): Handle {
  return {
    $typeName: "switchboard.common.v1.Handle",
    app: init.app ?? 0,
    value: init.value ?? "",
    providerId: init.providerId ?? "",
  };
}

/**
 * A SendMessageRequest message, as `create(SendMessageRequestSchema, init)` would make it (bytes
 * used as given, as in {@link newEnvelope}).
 */
export function newSendMessageRequest(init: SendMessageRequestInit): SendMessageRequest {
  return {
    $typeName: "switchboard.delivery.v1.SendMessageRequest",
    sender: init.sender === undefined ? undefined : newAddress(init.sender),
    destinationAccountId: init.destinationAccountId ?? "",
    messages: init.messages === undefined ? [] : init.messages.map(newOutgoingMessage),
    clientMessageId: init.clientMessageId ?? "",
    clientTimestampMs: init.clientTimestampMs ?? 0n,
    ephemeral: init.ephemeral ?? false,
    urgent: init.urgent ?? false,
    forwarded: init.forwarded ?? false,
    reportTag: init.reportTag ?? EMPTY,
    noDeliveryReceipt: init.noDeliveryReceipt ?? false,
  };
}

function newOutgoingMessage(init: OutgoingMessageInit): OutgoingMessage {
  return {
    $typeName: "switchboard.delivery.v1.OutgoingMessage",
    deviceId: init.deviceId ?? 0,
    registrationId: init.registrationId ?? 0,
    type: init.type ?? 0,
    content: init.content ?? EMPTY,
  };
}

/**
 * An Envelope message, as `create(EnvelopeSchema, init)` would make it. Bytes fields are used as
 * given, not copied (as `create` does too); an absent one is a shared empty array, which protobuf-es
 * never writes to.
 */
export function newEnvelope(init: EnvelopeInit): Envelope {
  return {
    $typeName: "switchboard.common.v1.Envelope",
    id: init.id ?? "",
    clientMessageId: init.clientMessageId ?? "",
    type: init.type ?? 0,
    source: init.source === undefined ? undefined : newAddress(init.source),
    sourceApp: init.sourceApp ?? 0,
    sourceProviderId: init.sourceProviderId ?? "",
    sourceRegistrationId: init.sourceRegistrationId ?? 0,
    destination: init.destination === undefined ? undefined : newAddress(init.destination),
    destinationApp: init.destinationApp ?? 0,
    content: init.content ?? EMPTY,
    serverTimestampMs: init.serverTimestampMs ?? 0n,
    clientTimestampMs: init.clientTimestampMs ?? 0n,
    ephemeral: init.ephemeral ?? false,
    urgent: init.urgent ?? false,
    groupId: init.groupId ?? "",
    forwarded: init.forwarded ?? false,
    reportTag: init.reportTag ?? EMPTY,
    sequence: init.sequence ?? 0n,
    serverFrankingTag: init.serverFrankingTag ?? EMPTY,
    messageRequest: init.messageRequest ?? false,
  };
}
