/** The gateway version, reported in logs and the OpenAPI document. */
export const VERSION = "0.1.0";
