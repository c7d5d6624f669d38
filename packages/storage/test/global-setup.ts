import { createGlobalSetup } from "@switchboard/testkit/global-setup";
import { migrateUrl } from "../src/index.js";

export default createGlobalSetup({ name: "storage", migrate: async (url) => void (await migrateUrl(url)) });
