// @switchboard/grpc/testing: helpers for the tests of hand-written codecs (those built on
// WireReader and WireWriter), which check them against protobuf-es on random input. For test files
// only: nothing in a service imports this entry point.
export { outcome, protobufEsCalls } from "./protobuf-es-calls.js";
export {
  bigintOrNumber,
  initOrMessage,
  INT64_SAMPLES,
  LOSSY_STRINGS,
  maybeUnset,
  randomAnyText,
  randomBytes,
  randomText,
  TEXT_SAMPLES,
  UINT32_SAMPLES,
} from "./random-values.js";
export type { RandomSource } from "./random-values.js";
