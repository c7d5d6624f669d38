// What the HTTP gateways (Messenger-style, Instagram-style) share about their HTTP edge.
export { clientErrorHandler, frameworkErrors, transportErrorOptions } from "./transport-errors.js";
export { createRequestIds } from "./request-ids.js";
