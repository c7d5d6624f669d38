// gRPC fuzzing: requests built straight from the protobuf descriptors on the wire (so they can be
// wrong in ways a typed client cannot express), sent raw over grpc-js with a passthrough
// serializer, and each outcome classified as a clear answer or a finding.
import {
  ScalarType,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
} from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { googleRpcErrorDetails, googleRpcStatus } from "@switchboard/proto";
import { HOSTILE_IDS, type Rng } from "./prng.js";

/** The kinds of hostile request the gRPC fuzzer builds. */
export const GRPC_KINDS = [
  "random-bytes",
  "mutated-valid",
  "wrong-wire-type",
  "unknown-enum",
  "invalid-utf8",
  "unknown-fields",
  "huge-repeated",
  "oversized",
] as const;
export type GrpcKind = (typeof GRPC_KINDS)[number];

/** Plausible values (real ids of this run) mixed into generated fields so calls get past validation. */
export interface FuzzContext {
  accountIds: string[];
  groupIds: string[];
  handles: string[];
  /** Largest message the target accepts; "oversized" cases exceed it. */
  maxMessageBytes: number;
}

/** One call's outcome. */
export interface GrpcOutcome {
  code: grpc.status;
  /** The ErrorInfo reason from grpc-status-details-bin, when present. */
  reason?: string;
  details: string;
}

const BAD_UTF8 = [
  Buffer.from([0xff, 0xfe, 0xfd]),
  Buffer.from([0xc3, 0x28]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0x61, 0x00, 0x62]),
];

function plausibleString(f: DescField, rng: Rng, ctx: FuzzContext): string {
  const name = f.name;
  if (rng.chance(0.15)) return rng.pick(HOSTILE_IDS);
  if (/account_id$|^id$/.test(name) && ctx.accountIds.length > 0) return rng.pick(ctx.accountIds);
  if (/group_id$/.test(name) && ctx.groupIds.length > 0) return rng.pick(ctx.groupIds);
  if (/value|handle|phone|jid|username/.test(name) && ctx.handles.length > 0) return rng.pick(ctx.handles);
  if (/password|secret/.test(name)) return rng.bytes(18).toString("base64url");
  const uuid = rng
    .bytes(16)
    .toString("hex")
    .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");
  return rng.pick(["", "x", rng.bytes(8).toString("hex"), uuid, "é∆😀", " "]);
}

function plausibleInt(f: DescField, rng: Rng): number {
  if (/registration_id/.test(f.name)) return rng.int(1, 16_380);
  if (/device_id/.test(f.name)) return rng.int(1, 3);
  return rng.pick([0, 1, 2, 3, 100, 65_535, 2 ** 31 - 1]);
}

function writeScalar(w: BinaryWriter, no: number, t: ScalarType, f: DescField, rng: Rng, ctx: FuzzContext) {
  switch (t) {
    case ScalarType.STRING:
      w.tag(no, WireType.LengthDelimited).string(plausibleString(f, rng, ctx));
      return;
    case ScalarType.BYTES:
      w.tag(no, WireType.LengthDelimited).bytes(rng.bytes(rng.int(0, 96)));
      return;
    case ScalarType.BOOL:
      w.tag(no, WireType.Varint).bool(rng.chance(0.5));
      return;
    case ScalarType.DOUBLE:
      w.tag(no, WireType.Bit64).double(rng.next() * 1e6);
      return;
    case ScalarType.FLOAT:
      w.tag(no, WireType.Bit32).float(rng.next());
      return;
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      w.tag(no, WireType.Bit32).fixed32(plausibleInt(f, rng));
      return;
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      w.tag(no, WireType.Bit64).fixed64(plausibleInt(f, rng));
      return;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
      w.tag(no, WireType.Varint).uint64(rng.chance(0.5) ? Date.now() : plausibleInt(f, rng));
      return;
    default:
      w.tag(no, WireType.Varint).uint32(plausibleInt(f, rng));
  }
}

/** Which element kind a field has (lists: their element). */
function elementOf(
  f: DescField,
):
  | { kind: "scalar"; scalar: ScalarType }
  | { kind: "enum" }
  | { kind: "message"; message: DescMessage }
  | undefined {
  switch (f.fieldKind) {
    case "scalar":
      return { kind: "scalar", scalar: f.scalar };
    case "enum":
      return { kind: "enum" };
    case "message":
      return { kind: "message", message: f.message };
    case "list":
      if (f.listKind === "scalar") return { kind: "scalar", scalar: f.scalar };
      if (f.listKind === "enum") return { kind: "enum" };
      return { kind: "message", message: f.message };
    default:
      return undefined; // maps: none in our request messages
  }
}

interface Twist {
  kind: GrpcKind;
  /** For wrong-wire-type: the field whose wire type is wrong. */
  target?: DescField;
}

function writeField(w: BinaryWriter, f: DescField, rng: Rng, ctx: FuzzContext, depth: number, twist: Twist) {
  const el = elementOf(f);
  if (!el) return;
  const no = f.number;
  if (twist.kind === "wrong-wire-type" && twist.target === f) {
    // The right field number with the wrong wire type (and a value of that type).
    if (el.kind === "scalar" && el.scalar !== ScalarType.STRING && el.scalar !== ScalarType.BYTES)
      w.tag(no, WireType.LengthDelimited).bytes(rng.bytes(rng.int(0, 16)));
    else if (rng.chance(0.5)) w.tag(no, WireType.Varint).uint64(rng.int(0, 2 ** 31));
    else w.tag(no, WireType.Bit32).fixed32(rng.int(0, 2 ** 31));
    return;
  }
  if (el.kind === "enum") {
    const value = twist.kind === "unknown-enum" ? rng.pick([99, 12_345, 2 ** 31 - 1, -1]) : rng.int(0, 3);
    w.tag(no, WireType.Varint).int32(value);
    return;
  }
  if (el.kind === "message") {
    if (depth > 3) return;
    w.tag(no, WireType.LengthDelimited).bytes(encodeMessage(el.message, rng, ctx, depth + 1, twist));
    return;
  }
  if (twist.kind === "invalid-utf8" && el.scalar === ScalarType.STRING) {
    w.tag(no, WireType.LengthDelimited).bytes(rng.pick(BAD_UTF8));
    return;
  }
  writeScalar(w, no, el.scalar, f, rng, ctx);
}

/** Encodes a plausible (or, per `twist`, subtly wrong) instance of `schema`, straight to the wire. */
export function encodeMessage(
  schema: DescMessage,
  rng: Rng,
  ctx: FuzzContext,
  depth = 0,
  twist: Twist = { kind: "mutated-valid" },
): Uint8Array {
  const w = new BinaryWriter();
  const oneofs = new Set<unknown>();
  for (const f of schema.fields) {
    if (f.oneof) {
      if (oneofs.has(f.oneof) || rng.chance(0.5)) continue;
      oneofs.add(f.oneof);
    } else if (rng.chance(0.15)) continue;
    const count = f.fieldKind === "list" ? rng.int(1, 3) : 1;
    for (let i = 0; i < count; i++) writeField(w, f, rng, ctx, depth, twist);
  }
  return w.finish();
}

function mutate(bytes: Uint8Array, rng: Rng): Buffer {
  const b = Buffer.from(bytes);
  if (b.length === 0) return rng.bytes(rng.int(1, 16));
  switch (rng.int(0, 4)) {
    case 0: // flip a few bytes
      for (let i = 0; i < rng.int(1, 4); i++) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
      return b;
    case 1: // truncate
      return b.subarray(0, rng.int(0, b.length - 1));
    case 2: // insert garbage
      return Buffer.concat([b.subarray(0, rng.int(0, b.length)), rng.bytes(rng.int(1, 8)), b]);
    case 3: // duplicate a slice (repeated fields, duplicate singular fields)
      return Buffer.concat([b, b.subarray(rng.int(0, b.length - 1))]);
    default: // a huge length prefix
      return Buffer.concat([Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), b]);
  }
}

/** Builds the request bytes of one case of `kind` for `method`. */
export function buildGrpcCase(method: DescMethod, kind: GrpcKind, rng: Rng, ctx: FuzzContext): Buffer {
  const schema = method.input;
  switch (kind) {
    case "random-bytes":
      return rng.bytes(rng.int(0, 512));
    case "oversized":
      return rng.bytes(ctx.maxMessageBytes + rng.int(1, 64 * 1024));
    case "mutated-valid":
      return mutate(encodeMessage(schema, rng, ctx), rng);
    case "wrong-wire-type": {
      const target = schema.fields.length > 0 ? rng.pick(schema.fields) : undefined;
      return Buffer.from(encodeMessage(schema, rng, ctx, 0, { kind, target }));
    }
    case "unknown-enum":
    case "invalid-utf8":
      return Buffer.from(encodeMessage(schema, rng, ctx, 0, { kind }));
    case "unknown-fields": {
      const w = new BinaryWriter();
      for (let i = 0; i < rng.int(1, 5); i++) {
        const no = rng.int(100, 536_870_911);
        if (rng.chance(0.5)) w.tag(no, WireType.Varint).uint64(rng.int(0, 2 ** 31));
        else w.tag(no, WireType.LengthDelimited).bytes(rng.bytes(rng.int(0, 64)));
      }
      return Buffer.concat([encodeMessage(schema, rng, ctx), w.finish()]);
    }
    case "huge-repeated": {
      const lists = schema.fields.filter((f) => f.fieldKind === "list");
      const base = encodeMessage(schema, rng, ctx);
      if (lists.length === 0) return Buffer.from(base);
      const f = rng.pick(lists);
      // Many small elements, within the transport limit so that the service itself must cope.
      const budget = Math.min(ctx.maxMessageBytes - 4096, 512 * 1024);
      let written = 0;
      const elementWriter = new BinaryWriter();
      writeField(elementWriter, f, rng, ctx, 3, { kind: "mutated-valid" });
      const one = elementWriter.finish();
      const n = Math.max(1, Math.floor(budget / Math.max(one.length, 1)));
      const chunks: Uint8Array[] = [base];
      for (let i = 0; i < n && written < budget; i++) {
        chunks.push(one);
        written += one.length;
      }
      return Buffer.concat(chunks);
    }
  }
}

/** The unary and streaming methods of a service. */
export function methodsOf(service: DescService): { unary: DescMethod[]; bidi: DescMethod[] } {
  return {
    unary: service.methods.filter((m) => m.methodKind === "unary"),
    bidi: service.methods.filter((m) => m.methodKind === "bidi_streaming"),
  };
}

export const pathOf = (m: DescMethod) => `/${m.parent.typeName}/${m.name}`;
const passthrough = (b: Buffer) => b;

/** The ErrorInfo reason in a status's `grpc-status-details-bin`, if any. */
export function reasonOf(metadata: grpc.Metadata | undefined): string | undefined {
  const raw = metadata?.get("grpc-status-details-bin")[0];
  if (raw === undefined || typeof raw === "string") return undefined;
  try {
    const status = fromBinary(googleRpcStatus.StatusSchema, raw);
    for (const any of status.details) {
      const info = anyUnpack(any, googleRpcErrorDetails.ErrorInfoSchema);
      if (info && info.reason !== "") return info.reason;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** Sends raw request bytes as one unary call with a client-side deadline; never throws. */
export function callUnary(
  client: grpc.Client,
  method: DescMethod,
  payload: Buffer,
  metadata: grpc.Metadata,
  deadlineMs: number,
): Promise<GrpcOutcome> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      pathOf(method),
      passthrough,
      passthrough,
      payload,
      metadata,
      { deadline: Date.now() + deadlineMs },
      (err) => {
        if (!err) resolve({ code: 0, details: "" });
        else resolve({ code: err.code, reason: reasonOf(err.metadata), details: err.details });
      },
    );
  });
}

/**
 * Opens a bidi stream, writes the frames, waits `settleMs` for the server's answers, then ends it
 * (half-close, and cancel if still open after `settleMs` more). Returns the final status, or
 * `open: true` when the server kept the stream open (the normal state of a healthy stream).
 */
export function callBidi(
  client: grpc.Client,
  method: DescMethod,
  frames: Buffer[],
  metadata: grpc.Metadata,
  settleMs: number,
): Promise<GrpcOutcome & { responses: number; open: boolean }> {
  return new Promise((resolve) => {
    let responses = 0;
    let cancelledByUs = false;
    const call = client.makeBidiStreamRequest(pathOf(method), passthrough, passthrough, metadata, {
      deadline: Date.now() + 4 * settleMs + 10_000,
    });
    call.on("data", () => void responses++);
    call.on("error", () => undefined);
    call.on("status", (s: grpc.StatusObject) => {
      clearTimeout(t1);
      clearTimeout(t2);
      const open = cancelledByUs && s.code === grpc.status.CANCELLED;
      resolve({ code: s.code, reason: reasonOf(s.metadata), details: s.details, responses, open });
    });
    for (const f of frames) call.write(f);
    const t1 = setTimeout(() => call.end(), settleMs);
    const t2 = setTimeout(() => {
      cancelledByUs = true;
      call.cancel();
    }, 2 * settleMs);
  });
}

/**
 * A clear answer: OK, or an error status that carries an ErrorInfo reason and is neither
 * INTERNAL nor UNKNOWN nor a hang (DEADLINE_EXCEEDED at our client deadline). The one status the
 * transport itself sends for an over-limit message (RESOURCE_EXHAUSTED, no details) counts too.
 */
export function isClear(o: GrpcOutcome, kind: GrpcKind | "stream"): boolean {
  if (o.code === grpc.status.OK) return true;
  if (o.code === grpc.status.INTERNAL || o.code === grpc.status.UNKNOWN) return false;
  if (o.code === grpc.status.DEADLINE_EXCEEDED) return false;
  if (kind === "oversized" && o.code === grpc.status.RESOURCE_EXHAUSTED) return true;
  return o.reason !== undefined;
}

/** Status name for the figure table (`INVALID_ARGUMENT/MALFORMED_REQUEST` style). */
export function outcomeLabel(o: GrpcOutcome): string {
  const name = grpc.status[o.code] ?? String(o.code);
  return o.reason ? `${name}` : name;
}
