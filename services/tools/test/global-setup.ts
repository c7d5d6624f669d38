import { migrateAppSchemas } from "../src/app-files.js";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";

// The template holds the whole schema: the delivery service's tables and all three gateways'.
export default createGlobalSetup({ name: "tools", migrate: (url) => migrateAppSchemas(url, "all") });
