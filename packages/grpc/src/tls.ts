// TLS for gRPC listeners and channels from PEM files, for deployments outside a private network.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

/** PEM file paths of a TLS listener; all unset means plaintext. */
export interface ServerTlsFiles {
  /** Certificate chain (PEM). Required together with `keyFile`. */
  certFile?: string;
  /** Private key (PEM). Required together with `certFile`. */
  keyFile?: string;
  /** CA bundle (PEM); when set, clients must present a certificate it signed (mutual TLS). */
  clientCaFile?: string;
}

/** PEM file paths of a TLS client; an unset `caFile` means plaintext. */
export interface ChannelTlsFiles {
  /** CA bundle (PEM) that signed the server's certificate. Setting it turns TLS on. */
  caFile?: string;
  /** Client certificate chain (PEM) for a server that requires one. Together with `keyFile`. */
  certFile?: string;
  /** Client private key (PEM). Together with `certFile`. */
  keyFile?: string;
}

const read = (path: string, what: string): Buffer => {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
};

/**
 * Server credentials from PEM files: undefined when neither file is set (plaintext), TLS when
 * both are, mutual TLS when `clientCaFile` is set as well. Throws (naming the problem) when only
 * one of cert and key is set, a client CA is set without them, or a file cannot be read.
 */
export function serverTlsCredentials(files: ServerTlsFiles): grpc.ServerCredentials | undefined {
  const { certFile, keyFile, clientCaFile } = files;
  if (!certFile && !keyFile) {
    if (clientCaFile) throw new Error("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
    return undefined;
  }
  if (!certFile || !keyFile) throw new Error("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
  const ca = clientCaFile ? read(clientCaFile, "client CA file") : null;
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: read(certFile, "certificate file"), private_key: read(keyFile, "key file") }],
    ca !== null,
  );
}

/**
 * Channel credentials from PEM files: undefined (plaintext) when `caFile` is unset, otherwise TLS
 * verifying the server against that CA, with a client certificate when `certFile` and `keyFile`
 * are set. Throws on a partial client pair or an unreadable file.
 */
export function channelTlsCredentials(files: ChannelTlsFiles): grpc.ChannelCredentials | undefined {
  const { caFile, certFile, keyFile } = files;
  if (Boolean(certFile) !== Boolean(keyFile))
    throw new Error("DELIVERY_TLS_CERT_FILE and DELIVERY_TLS_KEY_FILE must be set together");
  if (!caFile) {
    if (certFile) throw new Error("DELIVERY_TLS_CERT_FILE needs DELIVERY_TLS_CA_FILE");
    return undefined;
  }
  return grpc.credentials.createSsl(
    read(caFile, "CA file"),
    keyFile ? read(keyFile, "client key file") : null,
    certFile ? read(certFile, "client certificate file") : null,
  );
}
