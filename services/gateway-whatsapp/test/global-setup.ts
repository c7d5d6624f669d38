import { migrateUrl } from "@switchboard/storage";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";
import { migrateWaUrl } from "../src/storage/database.js";

// The template holds both the delivery service's schema and the gateway's wa_* tables.
export default createGlobalSetup({
  name: "gwwa",
  migrate: async (url) => {
    await migrateUrl(url);
    await migrateWaUrl(url);
  },
});
