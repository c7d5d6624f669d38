import { loadOrExit } from "@switchboard/config";
import { createLogger } from "@switchboard/logger";
import { loadConfig } from "./config.js";
import { startSystem } from "./system.js";

const config = loadOrExit(() => loadConfig());
const log = createLogger({ service: "standalone", version: "0.1.0", level: config.LOG_LEVEL });
const system = await startSystem(config, log);
const e = system.endpoints;

process.stdout.write(`
Switchboard is up (${e.embeddedDatabase ? `embedded PostgreSQL in ${config.DATA_DIR}/pglite` : "PostgreSQL from DATABASE_URL"}, ${
  e.embeddedFanout ? "in-process fan-out" : "Redis fan-out"
}).

  delivery (gRPC)            ${e.delivery}        metrics ${e.deliveryMetrics}
  WhatsApp-style (gRPC)      ${e.whatsapp}        dev codes ${e.whatsappAdmin}/admin/codes/<phone>
  Messenger-style (HTTP+WS)  ${e.messenger}       OpenAPI ${e.messenger}/openapi.json
  Instagram-style (HTTP+SSE) ${e.instagram}       OpenAPI ${e.instagram}/openapi.json

Try:
  grpcurl -plaintext ${e.delivery} list
  grpcurl -plaintext ${e.whatsapp} describe switchboard.gateway.whatsapp.v1.WhatsAppService
  curl -s -X POST ${e.messenger}/v1/signup -H 'content-type: application/json' -d '{"registration_id": 42}'
  curl -s -X POST ${e.instagram}/v1/accounts -H 'content-type: application/json' -d '{"username": "ada.l", "registration_id": 7}'
  pnpm demo      # a scripted cross-app conversation through this system

App tokens (delivery's app credentials) are in ${config.DATA_DIR}/app-tokens.json.
`);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  await system.close();
  log.info({}, "stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
