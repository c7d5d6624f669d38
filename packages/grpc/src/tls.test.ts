import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { channelTlsCredentials, serverTlsCredentials } from "./tls.js";

const dir = mkdtempSync(join(tmpdir(), "grpc-tls-"));
const ca = join(dir, "ca.pem");
writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("serverTlsCredentials", () => {
  test("returns undefined (plaintext) when no file is set", () => {
    expect(serverTlsCredentials({})).toBeUndefined();
  });

  test("refuses a certificate without its key, and a client CA without either", () => {
    expect(() => serverTlsCredentials({ certFile: ca })).toThrow(/set together/);
    expect(() => serverTlsCredentials({ keyFile: ca })).toThrow(/set together/);
    expect(() => serverTlsCredentials({ clientCaFile: ca })).toThrow(/needs TLS_CERT_FILE/);
  });

  test("names the file it cannot read", () => {
    expect(() => serverTlsCredentials({ certFile: join(dir, "missing.pem"), keyFile: ca })).toThrow(
      /missing\.pem/,
    );
  });
});

describe("channelTlsCredentials", () => {
  test("returns undefined (plaintext) without a CA file, and TLS credentials with one", () => {
    expect(channelTlsCredentials({})).toBeUndefined();
    expect(channelTlsCredentials({ caFile: ca })?._isSecure()).toBe(true);
  });

  test("refuses half a client certificate pair, and a client certificate without a CA", () => {
    expect(() => channelTlsCredentials({ caFile: ca, certFile: ca })).toThrow(/set together/);
    expect(() => channelTlsCredentials({ certFile: ca, keyFile: ca })).toThrow(/needs DELIVERY_TLS_CA_FILE/);
  });
});
