import { migrateUrl } from "@switchboard/storage";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";
import { migrateGatewayUrl } from "../src/storage/database.js";

// The template holds the delivery service's schema and the gateway's ms_* tables, as in production
// (both share one DATABASE_URL).
export default createGlobalSetup({
  name: "gwms",
  migrate: async (url) => {
    await migrateUrl(url);
    await migrateGatewayUrl(url);
  },
});
