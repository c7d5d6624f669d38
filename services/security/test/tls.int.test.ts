// TLS (issue 8): a CA and a server certificate generated at test time with openssl; delivery and
// the WhatsApp gateway serve gRPC over TLS, the Messenger and Instagram gateways serve HTTPS, and
// every gateway reaches delivery over TLS (DELIVERY_TLS_CA_FILE). Round trips through each prove
// it; plaintext clients are refused.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@switchboard/grpc";
import { App, DirectoryService, whatsapp } from "@switchboard/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startSystem, type System } from "./system.js";

/** A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it (PEM files). */
function generateCertificates(dir: string) {
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=switchboard test CA",
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    f("server.key"),
    "-out",
    f("server.csr"),
  );
  writeFileSync(f("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    f("san.ext"),
    "-out",
    f("server.pem"),
  );
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key") };
}

/** One HTTPS request verified against `ca`; resolves status and body. */
function https(port: number, method: string, path: string, ca: Buffer, body?: unknown) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        ca,
        headers: body ? { "content-type": "application/json" } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe("TLS", () => {
  let sys: System;
  let dir: string;
  let files: ReturnType<typeof generateCertificates>;
  let ca: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-tls-"));
    files = generateCertificates(dir);
    ca = readFileSync(files.ca);
    const serve = { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key };
    const link = { DELIVERY_TLS_CA_FILE: files.ca };
    sys = await startSystem({
      httpScheme: "https",
      env: {
        delivery: serve,
        "gateway-whatsapp": { ...serve, ...link },
        "gateway-messenger": { ...serve, ...link },
        "gateway-instagram": { ...serve, ...link },
      },
    });
  });

  afterAll(async () => {
    await sys?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("delivery serves gRPC over TLS and refuses plaintext", async () => {
    const target = `127.0.0.1:${sys.ports.delivery}`;
    const auth = { metadata: () => ({ authorization: `Bearer ${sys.tokens.whatsapp}` }) };
    const secure = createClient(DirectoryService, target, {
      ...auth,
      credentials: grpc.credentials.createSsl(ca),
    });
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const r = await secure.registerAccount({
      handle: { app: App.WHATSAPP, value: phone },
      registrationId: 7,
      password: randomBytes(18).toString("base64url"),
    });
    expect(r.account?.id).toMatch(/^[0-9a-f-]{36}$/);
    secure.close();

    const plain = createClient(DirectoryService, target, auth);
    await expect(
      plain.resolveHandle({ handle: { app: App.WHATSAPP, value: phone } }, { deadlineMs: 5_000 }),
    ).rejects.toThrow();
    plain.close();
  });

  test("the WhatsApp gateway serves gRPC over TLS and reaches delivery over TLS", async () => {
    const wa = createClient(whatsapp.WhatsAppService, `127.0.0.1:${sys.ports.whatsapp}`, {
      credentials: grpc.credentials.createSsl(ca),
    });
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    await wa.requestCode({ phoneNumber: phone });
    const codeRes = await fetch(`http://127.0.0.1:${sys.ports.whatsappAdmin}/admin/codes/${phone.slice(1)}`);
    const { code } = (await codeRes.json()) as { code: string };
    // VerifyCode registers the account at delivery: a round trip over the gateway's TLS link.
    const v = await wa.verifyCode({ phoneNumber: phone, code, registrationId: 42 });
    expect(v.accountId).toMatch(/^[0-9a-f-]{36}$/);
    wa.close();
  });

  test("the Messenger and Instagram gateways serve HTTPS and reach delivery over TLS", async () => {
    const signup = await https(sys.ports.messenger, "POST", "/v1/signup", ca, { registration_id: 4711 });
    expect([200, 201]).toContain(signup.status);
    expect(JSON.parse(signup.body)).toHaveProperty("access_token");

    const ig = await https(sys.ports.instagram, "POST", "/v1/accounts", ca, {
      username: `tls_${randomBytes(3).toString("hex")}`,
      registration_id: 812,
    });
    expect([200, 201]).toContain(ig.status);
    expect(JSON.parse(ig.body)).toHaveProperty("access_token");

    // A plaintext request to the HTTPS port gets no HTTP answer.
    const plain = await fetch(`http://127.0.0.1:${sys.ports.messenger}/healthz`).then(
      (r) => r.status,
      () => "refused",
    );
    expect(plain).not.toBe(200);
  });
});
