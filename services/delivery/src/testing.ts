// For tests that start a delivery service in-process (this package's and the gateways', SDK's and
// load generator's): one set of small, explicit settings instead of a copy per harness.
import { App } from "@switchboard/proto";
import type { AppConfig } from "./app.js";

/** App tokens a test's delivery service accepts, by app. */
export type TestAppTokens = Partial<Record<"whatsapp" | "messenger" | "instagram", string>>;

const APPS = { whatsapp: App.WHATSAPP, messenger: App.MESSENGER, instagram: App.INSTAGRAM } as const;

/**
 * A delivery configuration for tests: the given apps' tokens (first-party, no provider), 256 KiB
 * ciphertexts, queues of 10,000 kept an hour, four commit lanes of up to 500 sends, acks in batches
 * of 2,000, a 15 s queue poll, 6 devices per account, groups of 1,000, instance id `test`; `over` replaces any of it.
 */
export function testDeliveryConfig(tokens: TestAppTokens, over: Partial<AppConfig> = {}): AppConfig {
  return {
    APP_TOKENS: Object.entries(tokens).map(([app, token]) => ({
      app: APPS[app as keyof typeof APPS],
      providerId: "",
      token: token ?? "",
    })),
    MAX_CIPHERTEXT_BYTES: 256 * 1024,
    QUEUE_TTL_SECONDS: 3600,
    MAX_QUEUE_LENGTH: 10_000,
    SEND_BATCH_MAX: 500,
    SEND_LANES: 4,
    ACK_BATCH_MAX: 2000,
    STREAM_POLL_MS: 15_000,
    MAX_DEVICES: 6,
    MAX_GROUP_MEMBERS: 1000,
    INSTANCE_ID: "test",
    ...over,
  };
}
