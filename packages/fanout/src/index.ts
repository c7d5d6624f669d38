export type { DeviceKey, Fanout, FanoutEvent, FanoutLogger, PayloadHandler } from "./fanout.js";
export { DEFAULT_TIMEOUT_MS, MAX_PAYLOAD_BYTES } from "./fanout.js";
export { broadcastChannel, channelForDevice, eventsChannel } from "./keys.js";
export { createMemoryFanout } from "./memory-fanout.js";
export type { MemoryFanoutOptions } from "./memory-fanout.js";
export { createRedisFanout } from "./redis-fanout.js";
export type { RedisFanoutOptions } from "./redis-fanout.js";
export { createRedisClusterFanout } from "./redis-cluster-fanout.js";
export type { RedisClusterFanoutOptions } from "./redis-cluster-fanout.js";
