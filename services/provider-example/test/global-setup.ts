import { migrateUrl } from "@switchboard/storage";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";

// The template holds the delivery service's schema; each gateway applies its own tables at start.
export default createGlobalSetup({
  name: "provider",
  migrate: async (url) => void (await migrateUrl(url)),
});
