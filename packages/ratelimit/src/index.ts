export { createMemoryRateLimiter, createRedisRateLimiter } from "./rate-limiter.js";
export type { RateLimiter, RateLimitPolicy, RateLimitRequest, RateLimitResult } from "./rate-limiter.js";
export { rateLimitKey } from "./keys.js";
