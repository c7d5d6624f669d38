import { createDatabase, migrateUrl } from "@switchboard/storage";
import { createGlobalSetup } from "@switchboard/testkit/global-setup";
import type { Kysely } from "kysely";
import { migrateGateway } from "../src/storage/migrate.js";
import type { IgDatabase } from "../src/storage/schema.js";

export default createGlobalSetup({
  name: "gw_ig",
  migrate: async (url) => {
    await migrateUrl(url);
    const db = createDatabase({ url, poolSize: 1 }) as unknown as Kysely<IgDatabase>;
    try {
      await migrateGateway(db);
    } finally {
      await db.destroy();
    }
  },
});
