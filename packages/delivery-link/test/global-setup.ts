import { migrateUrl } from "@switchboard/storage";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";

export default createGlobalSetup({ name: "delivery", migrate: async (url) => void (await migrateUrl(url)) });
