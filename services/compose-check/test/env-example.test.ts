import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { deliveryEnv } from "@switchboard/delivery";
import { gatewayEnv as instagramEnv } from "@switchboard/gateway-instagram";
import { gatewayMessengerEnv } from "@switchboard/gateway-messenger";
import { gatewayEnv as whatsappEnv } from "@switchboard/gateway-whatsapp";
import { standaloneEnv } from "@switchboard/standalone";
import { describe, expect, test } from "vitest";
import { readCompose } from "./compose-file.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const example = readFileSync(join(ROOT, ".env.example"), "utf8");
/** Names listed in .env.example, set (`NAME=`) or documented with their default (`# NAME=`). */
const listed = new Set([...example.matchAll(/^(?:# )?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));

describe(".env.example", () => {
  test("lists every variable each service parses", () => {
    const specs = {
      delivery: deliveryEnv,
      "gateway-whatsapp": whatsappEnv,
      "gateway-messenger": gatewayMessengerEnv,
      "gateway-instagram": instagramEnv,
      standalone: standaloneEnv,
    };
    for (const [service, spec] of Object.entries(specs))
      for (const name of Object.keys(spec)) expect(listed.has(name), `${service}: ${name}`).toBe(true);
  });

  test("lists every variable docker-compose.yml sets or interpolates", () => {
    const compose = readCompose(join(ROOT, "docker-compose.yml"));
    const names = new Set<string>();
    for (const service of Object.values(compose.services))
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        // The postgres image's own variables are not ours.
        if (!key.startsWith("POSTGRES_")) names.add(key);
        for (const m of String(value).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) if (m[1]) names.add(m[1]);
      }
    for (const name of names) expect(listed.has(name), name).toBe(true);
  });

  test("gives no secret a value", () => {
    for (const name of ["WHATSAPP_APP_TOKEN", "MESSENGER_APP_TOKEN", "INSTAGRAM_APP_TOKEN"])
      expect(example).toMatch(new RegExp(`^${name}=$`, "m"));
  });
});
