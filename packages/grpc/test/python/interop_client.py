#!/usr/bin/python3
"""Interop client: calls a Switchboard gRPC server from Python's grpcio.

Generates Python stubs at run time (Debian's protoc + grpc_python_plugin) from the repository's
proto/ tree into a temporary directory, then calls the server at --target:
  - grpc.health.v1.Health/Check for the server as a whole ("");
  - grpc.reflection.v1alpha.ServerReflection: list_services, and file_containing_symbol for
    switchboard.delivery.v1.DirectoryService;
  - switchboard.delivery.v1.DirectoryService/ResolveHandle (unary);
  - switchboard.delivery.v1.DirectoryService/GetAccount, expected to fail, decoding the
    google.rpc.Status in grpc-status-details-bin.
Prints one JSON object on stdout. Exit code 3 means a missing tool or module (see stderr).

Needs: apt-get install -y python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

DEBIAN_PACKAGES = "python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc"


def missing(what):
    print(f"missing {what}: apt-get install -y {DEBIAN_PACKAGES}", file=sys.stderr)
    sys.exit(3)


def protoc(include_dirs, out_dir, files, grpc_plugin=None):
    args = ["protoc"] + [f"-I{d}" for d in include_dirs] + [f"--python_out={out_dir}"]
    if grpc_plugin is not None:
        args += [f"--plugin=protoc-gen-grpc_python={grpc_plugin}", f"--grpc_python_out={out_dir}"]
    subprocess.run(args + files, check=True)


def generate(proto_root, out_dir):
    plugin = shutil.which("grpc_python_plugin")
    if shutil.which("protoc") is None or plugin is None:
        missing("protoc or grpc_python_plugin")
    vendor = os.path.join(proto_root, "vendor")
    # Well-known types (google/protobuf/any.proto) ship with Debian's protoc under /usr/include.
    wkt = ["/usr/include"] if os.path.isdir("/usr/include/google/protobuf") else []
    protoc(
        [proto_root],
        out_dir,
        [
            "switchboard/common/v1/identity.proto",
            "switchboard/common/v1/envelope.proto",
            "switchboard/delivery/v1/requests.proto",
            "switchboard/delivery/v1/directory.proto",
        ],
        plugin,
    )
    protoc([vendor] + wkt, out_dir, ["google/rpc/status.proto", "google/rpc/error_details.proto"])
    # Rooted at vendor/grpc so the modules are health.v1 / reflection.v1alpha: a top-level "grpc"
    # package would shadow grpcio itself. The proto packages (grpc.health.v1, ...) are unchanged.
    protoc(
        [os.path.join(vendor, "grpc")],
        out_dir,
        ["health/v1/health.proto", "reflection/v1alpha/reflection.proto"],
        plugin,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, help="host:port of the server")
    parser.add_argument("--proto-root", required=True, help="the repository's proto/ directory")
    opts = parser.parse_args()

    try:
        import grpc
        from google.protobuf import descriptor_pb2, json_format
    except ImportError as err:
        missing(f"Python module ({err})")

    with tempfile.TemporaryDirectory(prefix="switchboard-pystubs-") as out_dir:
        generate(opts.proto_root, out_dir)
        sys.path.insert(0, out_dir)
        from google.rpc import error_details_pb2, status_pb2
        from health.v1 import health_pb2, health_pb2_grpc
        from reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
        from switchboard.common.v1 import identity_pb2
        from switchboard.delivery.v1 import directory_pb2, directory_pb2_grpc

        result = {}
        with grpc.insecure_channel(opts.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)

            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            result["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)

            requests = [
                reflection_pb2.ServerReflectionRequest(list_services="*"),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="switchboard.delivery.v1.DirectoryService"
                ),
            ]
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = list(reflection.ServerReflectionInfo(iter(requests), timeout=10))
            result["services"] = sorted(s.name for s in responses[0].list_services_response.service)
            result["files"] = sorted(
                descriptor_pb2.FileDescriptorProto.FromString(raw).name
                for raw in responses[1].file_descriptor_response.file_descriptor_proto
            )

            directory = directory_pb2_grpc.DirectoryServiceStub(channel)
            resolved = directory.ResolveHandle(
                directory_pb2.ResolveHandleRequest(
                    handle=identity_pb2.Handle(app=identity_pb2.APP_WHATSAPP, value="+15551234567")
                ),
                timeout=10,
                metadata=[("x-request-id", "py-interop-1")],
            )
            result["resolveHandle"] = json_format.MessageToDict(resolved)

            try:
                directory.GetAccount(directory_pb2.GetAccountRequest(account_id="acc-py"), timeout=10)
                result["getAccountError"] = None
            except grpc.RpcError as err:
                failure = {"code": err.code().name, "details": err.details()}
                for key, value in err.trailing_metadata() or ():
                    if key != "grpc-status-details-bin":
                        continue
                    status = status_pb2.Status.FromString(value)
                    for detail in status.details:
                        info = error_details_pb2.ErrorInfo()
                        if detail.Unpack(info):
                            failure.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
                result["getAccountError"] = failure

        json.dump(result, sys.stdout)
        print()


if __name__ == "__main__":
    main()
