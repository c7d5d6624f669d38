import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@switchboard/errors";
import {
  DirectoryService,
  MessageService,
  grpcHealthV1,
  grpcReflectionV1,
  grpcReflectionV1alpha,
} from "@switchboard/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { createClient } from "../src/index.js";
import { fakeDirectory, startServer } from "./support.js";

const { ServingStatus } = { ServingStatus: grpcHealthV1.HealthCheckResponse_ServingStatus };

function healthClient(target: string) {
  const client = createClient(grpcHealthV1.Health, target, { defaultDeadlineMs: 5_000 });
  onTestFinished(() => client.close());
  return client;
}

describe("health", () => {
  test("reports SERVING for the server and each added service", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const health = healthClient(target);

    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: DirectoryService.typeName })).status).toBe(ServingStatus.SERVING);
    await expect(health.check({ service: "nope.v1.Nope" })).rejects.toMatchObject({ code: Code.NotFound });
  });

  test("reports a status set through health.setStatus", async () => {
    const { target, server } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    server.health.setStatus(DirectoryService.typeName, "NOT_SERVING");

    const res = await healthClient(target).check({ service: DirectoryService.typeName });

    expect(res.status).toBe(ServingStatus.NOT_SERVING);
  });

  test("turns NOT_SERVING for watchers as soon as close starts", async () => {
    const { target, server } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const seen: number[] = [];
    let closing: Promise<void> | undefined;

    for await (const res of healthClient(target).watch({ service: "" })) {
      seen.push(res.status);
      if (res.status === ServingStatus.SERVING) closing = server.close(2_000);
      else break;
    }
    await closing;

    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });

  test("logs health checks at debug level and other calls at info", async () => {
    const { target, lines, callEnds } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    await healthClient(target).check({ service: "" });

    const line = lines.find((l) => l.msg === "rpc finished" && l.rpc === "grpc.health.v1.Health/Check");
    expect(line).toMatchObject({ level: 20, code: "OK" });
    expect(callEnds).toContainEqual(expect.objectContaining({ rpc: "grpc.health.v1.Health/Check", code: 0 }));
  });
});

describe("reflection", () => {
  test("lists services and serves their files with dependencies (v1alpha)", async () => {
    const { target, lines } = await startServer((s) => {
      s.add(DirectoryService, fakeDirectory());
      s.add(MessageService, {});
    });
    const client = createClient(grpcReflectionV1alpha.ServerReflection, target);
    onTestFinished(() => client.close());

    const stream = client.serverReflectionInfo();
    await stream.send({ messageRequest: { case: "listServices", value: "*" } });
    await stream.send({
      messageRequest: { case: "fileContainingSymbol", value: "switchboard.delivery.v1.DirectoryService" },
    });
    stream.end();
    const responses = [];
    for await (const res of stream.responses) responses.push(res);

    const list = responses[0]?.messageResponse;
    expect(list?.case).toBe("listServicesResponse");
    const names = list?.case === "listServicesResponse" ? list.value.service.map((s) => s.name) : [];
    expect(names.sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "switchboard.delivery.v1.DirectoryService",
      "switchboard.delivery.v1.MessageService",
    ]);
    const files = responses[1]?.messageResponse;
    expect(files?.case).toBe("fileDescriptorResponse");
    const protos =
      files?.case === "fileDescriptorResponse"
        ? files.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b))
        : [];
    expect(protos.map((p) => p.name)).toEqual(
      expect.arrayContaining([
        "switchboard/delivery/v1/directory.proto",
        "switchboard/common/v1/identity.proto",
      ]),
    );
    const directory = protos.find((p) => p.name === "switchboard/delivery/v1/directory.proto");
    expect(directory?.service[0]?.method.map((m) => m.name)).toContain("ResolveHandle");
    expect(
      lines.some(
        (l) => l.rpc === "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" && l.level === 30,
      ),
    ).toBe(true);
  });

  test("lists services through reflection v1 too", async () => {
    const { target } = await startServer((s) => s.add(DirectoryService, fakeDirectory()));
    const client = createClient(grpcReflectionV1.ServerReflection, target);
    onTestFinished(() => client.close());

    const stream = client.serverReflectionInfo();
    await stream.send({ messageRequest: { case: "listServices", value: "" } });
    stream.end();
    const names: string[] = [];
    for await (const res of stream.responses) {
      if (res.messageResponse.case === "listServicesResponse")
        names.push(...res.messageResponse.value.service.map((s) => s.name));
    }

    expect(names).toContain("switchboard.delivery.v1.DirectoryService");
  });
});
