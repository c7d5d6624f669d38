import type { DeliveryLink } from "@switchboard/delivery-link";
import type { Kysely } from "kysely";
import type { Directory } from "../directory.js";
import type { EventHub } from "../live/event-hub.js";
import type { IgDatabase } from "../storage/schema.js";
import type { ThreadPeers } from "../storage/thread-peers.js";
import type { Authenticator } from "./auth.js";

/** What the route plugins need. */
export interface RouteContext {
  db: Kysely<IgDatabase>;
  link: DeliveryLink;
  directory: Directory;
  auth: Authenticator;
  hub: EventHub;
  /** Peers of one-to-one threads in inboxes (cached). */
  threadPeers: ThreadPeers;
}
