import { createGlobalSetup } from "@switchboard/testkit/global-setup";

// The template stays empty: the compose file's own `migrate` job and the gateways (at start)
// create the schema, as they would on a fresh PostgreSQL volume.
export default createGlobalSetup({ name: "compose-check", migrate: async () => undefined });
