import { migrateUrl } from "@switchboard/storage";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";

export default createGlobalSetup({ name: "faults", migrate: async (url) => void (await migrateUrl(url)) });
