// @switchboard/grpc: serve and call protobuf-es services over grpc-js.
export { createGrpcServer } from "./server.js";
export type { AddOptions, GrpcServer, GrpcServerOptions, HealthStatus, ServingStatus } from "./server.js";
export { methodPath } from "./service-adapter.js";
export type { CallEndEvent } from "./service-adapter.js";
export { createClient } from "./client.js";
export type { ClientCodecs, ClientOptions, ClientTarget, MethodCodec } from "./client.js";
export {
  appErrorToStatus,
  errorFromServiceError,
  errorFromStatus,
  isServiceError,
  ERROR_DOMAIN,
  STATUS_DETAILS_KEY,
} from "./status.js";
export { Encoded } from "./types.js";
export type {
  BidiCallSpec,
  BidiOpener,
  BidiStream,
  BidiStreamingCall,
  BidiStreamingImpl,
  CallContext,
  ClientCallOptions,
  ClientMethod,
  ClientStreamingCall,
  ClientStreamingImpl,
  MethodImpl,
  ServerStreamingCall,
  ServerStreamingImpl,
  ServiceClient,
  ServiceImpl,
  StreamSender,
  UnaryCall,
  UnaryImpl,
} from "./types.js";
export { channelTlsCredentials, serverTlsCredentials } from "./tls.js";
export type { ChannelTlsFiles, ServerTlsFiles } from "./tls.js";
export { useBufferTextEncoding } from "./text-encoding.js";
export {
  readNestedOrFallback,
  readOrFallback,
  WireReader,
  WIRE_FALLBACK,
  WIRE_LEN,
  WIRE_VARINT,
} from "./wire-reader.js";
// The writing half of the hand-written encoders: size functions, the checks that decide between
// writing a value by hand and falling back to protobuf-es, and the two-pass writer.
export {
  boolValue,
  bytesValue,
  delimitedSize,
  enumValue,
  int64Value,
  isRawMessage,
  listValue,
  messageValue,
  objectValue,
  stringValue,
  uint32Value,
  uint64Value,
  varint64Size,
  varintSize,
  wireTag,
  WireWriter,
} from "./wire-writer.js";
