export { createMetrics, instrumentLink, startMetricsServer } from "./metrics.js";
export type { GatewayMetrics, MetricsServer } from "./metrics.js";
