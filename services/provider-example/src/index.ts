// Acme Chat, the reference third-party provider (docs/interop.md).
export { buildAcmeApp, ACME_USERNAME } from "./app.js";
export type { AcmeApp, SignupJson, SignupResultJson } from "./app.js";
export { AcmeTransport, createAcmeTransport } from "./acme-transport.js";
export type { AcmeTransportOptions } from "./acme-transport.js";
