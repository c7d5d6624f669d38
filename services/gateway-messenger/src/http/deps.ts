import type { DeliveryLink } from "@switchboard/delivery-link";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Directory } from "../directory/directory.js";
import type { ConnectionRegistry } from "../live/connections.js";
import type { GatewayDatabase } from "../storage/schema.js";
import type { Authenticator } from "./auth.js";

/** What the route plugins need. */
export interface RouteDeps {
  db: Kysely<GatewayDatabase>;
  link: DeliveryLink;
  directory: Directory;
  auth: Authenticator;
  live: ConnectionRegistry;
  log: Logger;
}

/** Deadline of unary delivery calls made while serving a request. */
export const CALL = { deadlineMs: 10_000 } as const;
