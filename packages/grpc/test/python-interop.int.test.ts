// Interop with an independent gRPC implementation: Python's grpcio (Debian packages) calls our
// Node server with stubs generated from proto/ at test time.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { DirectoryService } from "@switchboard/proto";
import { describe, expect, test } from "vitest";
import { KNOWN_ACCOUNT, fakeDirectory, startServer } from "./support.js";
import type { CallContext } from "../src/index.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("./python/interop_client.py", import.meta.url));
const PROTO_ROOT = fileURLToPath(new URL("../../../proto", import.meta.url));
const INSTALL_HINT =
  "apt-get update && apt-get install -y python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc libprotobuf-dev";

interface InteropResult {
  health: string;
  services: string[];
  files: string[];
  resolveHandle: {
    found?: {
      account?: { id?: string; handle?: { app?: string; value?: string } };
      devices?: { registrationId?: number }[];
    };
  };
  getAccountError: {
    code: string;
    details: string;
    reason?: string;
    domain?: string;
    metadata?: Record<string, string>;
  } | null;
}

/** Fails (never skips) with the Debian packages to install when the Python side is missing. */
async function requirePythonGrpc(): Promise<void> {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} not found; install: ${INSTALL_HINT}`);
  try {
    await run(PYTHON, [
      "-c",
      "import grpc, google.protobuf; import shutil, sys; sys.exit(0 if shutil.which('protoc') and shutil.which('grpc_python_plugin') else 1)",
    ]);
  } catch (err) {
    throw new Error(
      `${PYTHON} lacks grpcio/protobuf or protoc/grpc_python_plugin is missing; install: ${INSTALL_HINT}`,
      {
        cause: err,
      },
    );
  }
}

describe("python interop", () => {
  test("a Python grpcio client checks health, lists services and calls DirectoryService", async () => {
    await requirePythonGrpc();
    const seen: CallContext[] = [];
    const { port } = await startServer((s) => s.add(DirectoryService, fakeDirectory(seen)));

    let stdout: string;
    try {
      ({ stdout } = await run(PYTHON, [SCRIPT, "--target", `127.0.0.1:${port}`, "--proto-root", PROTO_ROOT], {
        timeout: 60_000,
      }));
    } catch (err) {
      const { stderr = "", code } = err as { stderr?: string; code?: number };
      if (code === 3) throw new Error(`${stderr.trim()} (${INSTALL_HINT})`, { cause: err });
      throw new Error(`python interop client failed: ${stderr}`, { cause: err });
    }
    const result = JSON.parse(stdout) as InteropResult;

    expect(result.health).toBe("SERVING");
    expect(result.services).toEqual(
      expect.arrayContaining([
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "switchboard.delivery.v1.DirectoryService",
      ]),
    );
    // Reflection serves the file and its transitive imports.
    expect(result.files).toEqual([
      "switchboard/common/v1/envelope.proto",
      "switchboard/common/v1/identity.proto",
      "switchboard/delivery/v1/directory.proto",
      "switchboard/delivery/v1/requests.proto",
    ]);
    expect(result.resolveHandle.found?.account).toMatchObject({
      id: KNOWN_ACCOUNT.id,
      handle: { app: "APP_WHATSAPP", value: KNOWN_ACCOUNT.handle.value },
    });
    expect(result.resolveHandle.found?.devices?.[0]?.registrationId).toBe(4242);
    expect(seen[0]?.requestId).toBe("py-interop-1");
    expect(result.getAccountError).toEqual({
      code: "NOT_FOUND",
      details: "account acc-py not found",
      reason: "ACCOUNT_NOT_FOUND",
      domain: "switchboard",
      metadata: { accountId: "acc-py" },
    });
  });
});
