// Generated protobuf-es code for Switchboard's contract (proto/). Regenerate with `pnpm generate`.
// Shared identity and envelope types and the delivery API are exported flat; the WhatsApp-style
// gateway's and the end-to-end Content messages live in namespaces (their names overlap).
export * from "./gen/switchboard/common/v1/identity_pb.js";
export * from "./gen/switchboard/common/v1/envelope_pb.js";
export * from "./gen/switchboard/delivery/v1/directory_pb.js";
export * from "./gen/switchboard/delivery/v1/keys_pb.js";
export * from "./gen/switchboard/delivery/v1/messages_pb.js";
export * from "./gen/switchboard/delivery/v1/groups_pb.js";
export * from "./gen/switchboard/delivery/v1/reports_pb.js";
export * from "./gen/switchboard/delivery/v1/sealed_sender_pb.js";
export * from "./gen/switchboard/delivery/v1/requests_pb.js";
export * as whatsapp from "./gen/switchboard/gateway/whatsapp/v1/whatsapp_pb.js";
export * as content from "./gen/switchboard/content/v1/content_pb.js";
// Vendored third-party protos (proto/vendor/), in namespaces named after their proto package:
// google.rpc error details for `grpc-status-details-bin`, and the standard gRPC health and
// reflection services.
export * as googleRpcStatus from "./gen/google/rpc/status_pb.js";
export * as googleRpcErrorDetails from "./gen/google/rpc/error_details_pb.js";
export * as grpcHealthV1 from "./gen/grpc/health/v1/health_pb.js";
export * as grpcReflectionV1 from "./gen/grpc/reflection/v1/reflection_pb.js";
export * as grpcReflectionV1alpha from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
// Internal events between delivery instances (not public API).
export * as deliveryInternal from "./gen/switchboard/delivery/internal/v1/fanout_pb.js";
// Reflection-free builders for the messages the hot paths make per message.
export * from "./envelope.js";
