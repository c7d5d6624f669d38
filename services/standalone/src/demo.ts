// `pnpm demo`: a scripted cross-app conversation through a running system (see demo-run.ts).
// Endpoints default to the standalone runner's; flags override environment variables.
import { parseArgs } from "node:util";
import { ConfigError, parseEnv, str, type EnvOf } from "@switchboard/config";
import { runDemo, type DemoEndpoints } from "./demo-run.js";

const HELP = `Usage: pnpm demo [-- options]

Runs a scripted conversation between a WhatsApp-, a Messenger- and an Instagram-style user through
a running Switchboard (start one with \`pnpm start\`), and prints what each client decrypts next to
the ciphertext the server delivered.

Options (environment variable in brackets, then the default):
  --delivery <host:port>       the delivery service   [SWITCHBOARD_DELIVERY_TARGET]   127.0.0.1:50051
  --whatsapp <host:port>       WhatsApp-style gateway [SWITCHBOARD_WHATSAPP_TARGET]   127.0.0.1:50061
  --whatsapp-admin <url>       its dev admin endpoint [SWITCHBOARD_WHATSAPP_ADMIN_URL] http://127.0.0.1:50062
  --messenger <url>            Messenger-style gateway [SWITCHBOARD_MESSENGER_URL]    http://127.0.0.1:8081
  --instagram <url>            Instagram-style gateway [SWITCHBOARD_INSTAGRAM_URL]    http://127.0.0.1:8082
  --timeout-ms <ms>            wait at most this long for any one step                30000
  --help                       show this text
`;

const demoEnv = {
  SWITCHBOARD_DELIVERY_TARGET: str({ default: "127.0.0.1:50051" }),
  SWITCHBOARD_WHATSAPP_TARGET: str({ default: "127.0.0.1:50061" }),
  SWITCHBOARD_WHATSAPP_ADMIN_URL: str({ default: "http://127.0.0.1:50062" }),
  SWITCHBOARD_MESSENGER_URL: str({ default: "http://127.0.0.1:8081" }),
  SWITCHBOARD_INSTAGRAM_URL: str({ default: "http://127.0.0.1:8082" }),
};

function fail(message: string): never {
  process.stderr.write(`demo failed: ${message}\n`);
  process.exit(1);
}

let parsed: ReturnType<typeof parseCommandLine>;
function parseCommandLine() {
  return parseArgs({
    // `pnpm demo -- --flag` passes the separator through.
    args: process.argv.slice(2).filter((a) => a !== "--"),
    options: {
      delivery: { type: "string" },
      whatsapp: { type: "string" },
      "whatsapp-admin": { type: "string" },
      messenger: { type: "string" },
      instagram: { type: "string" },
      "timeout-ms": { type: "string" },
      help: { type: "boolean" },
    },
    strict: true,
  }).values;
}
try {
  parsed = parseCommandLine();
} catch (err) {
  fail(`${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
}
if (parsed.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

let env: EnvOf<typeof demoEnv>;
try {
  env = parseEnv(demoEnv);
} catch (err) {
  fail(err instanceof ConfigError ? err.message : String(err));
}
const trimSlash = (url: string) => url.replace(/\/+$/, "");
const endpoints: DemoEndpoints = {
  delivery: parsed.delivery ?? env.SWITCHBOARD_DELIVERY_TARGET,
  whatsapp: parsed.whatsapp ?? env.SWITCHBOARD_WHATSAPP_TARGET,
  whatsappAdmin: trimSlash(parsed["whatsapp-admin"] ?? env.SWITCHBOARD_WHATSAPP_ADMIN_URL),
  messenger: trimSlash(parsed.messenger ?? env.SWITCHBOARD_MESSENGER_URL),
  instagram: trimSlash(parsed.instagram ?? env.SWITCHBOARD_INSTAGRAM_URL),
};
const timeoutMs = parsed["timeout-ms"] === undefined ? 30_000 : Number(parsed["timeout-ms"]);
if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) fail("--timeout-ms must be a positive integer");

try {
  await runDemo(endpoints, process.stdout, { timeoutMs });
  process.exit(0);
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}
