// What the HTTP gateways (Messenger-style, Instagram-style) share about their HTTP edge.
export { clientErrorHandler, frameworkErrors, transportErrorOptions } from "./transport-errors.js";
export { createRequestIds } from "./request-ids.js";
export { createWriteCoalescer, MAX_HELD_BYTES, type Corkable } from "./write-coalescing.js";
