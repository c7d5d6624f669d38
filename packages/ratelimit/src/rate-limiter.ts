import { Cluster, Redis } from "ioredis";
import { rateLimitKey } from "./keys.js";

/** A token bucket: up to `capacity` tokens, refilled at `refillPerSecond`. */
export interface RateLimitPolicy {
  /** Short stable name, part of the key (e.g. `send`, `prekeys`). */
  name: string;
  capacity: number;
  refillPerSecond: number;
}

/** One bucket to take from. */
export interface RateLimitRequest {
  policy: RateLimitPolicy;
  /** Who is limited, e.g. `${accountId}.${deviceId}`. */
  subject: string;
  /** Tokens to take (default 1). */
  cost?: number;
}

/** The answer for one request. */
export interface RateLimitResult {
  allowed: boolean;
  /** When not allowed: how long until enough tokens are back. */
  retryAfterMs: number;
}

/** Token buckets shared by every instance. */
export interface RateLimiter {
  /**
   * Takes tokens from each bucket (all in one round trip). A request is allowed only if its own
   * bucket has the tokens; denied requests take nothing.
   */
  take(requests: readonly RateLimitRequest[]): Promise<RateLimitResult[]>;
  close(): Promise<void>;
}

// KEYS[1] bucket; ARGV: capacity, refill/s, cost, now ms. Returns {allowed 0/1, retryAfterMs}.
const TAKE_SCRIPT = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {allowed, retry}
`;

// The same over many buckets in one call. ARGV: now ms, the number P of policies, P pairs (capacity,
// refill/s), then per key i its policy's number (1..P) and cost — two arguments per bucket rather
// than four, since a batch's buckets share the time and a few policies. Returns {allowed1, retry1,
// allowed2, retry2, ...}. Used on a single Redis (keys may span slots).
const TAKE_MANY_SCRIPT = `
local now = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
local base = 2 + 2 * p
local out = {}
for i, key in ipairs(KEYS) do
  local j = tonumber(ARGV[base + 2 * i - 1])
  local capacity = tonumber(ARGV[1 + 2 * j])
  local rate = tonumber(ARGV[2 + 2 * j])
  local cost = tonumber(ARGV[base + 2 * i])
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil then tokens = capacity; ts = now end
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
  local allowed = 0
  local retry = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    retry = math.ceil((cost - tokens) * 1000 / rate)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(capacity * 1000 / rate) + 1000)
  out[2 * i - 1] = allowed
  out[2 * i] = retry
end
return out
`;

type Client = (Redis | Cluster) & {
  rlTake(key: string, capacity: number, rate: number, cost: number, now: number): Promise<[number, number]>;
  rlTakeMany(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
};

/**
 * Token buckets in Redis (or Redis Cluster when `nodes` is given), evaluated atomically by Lua: on
 * a single Redis a whole batch is one script call; on a cluster one call per bucket, pipelined.
 */
export function createRedisRateLimiter(opts: {
  url?: string;
  nodes?: Array<{ host: string; port: number }>;
  keyPrefix?: string;
}): RateLimiter {
  // While Redis is unreachable a command waits at most 500 ms, then fails (callers fail open),
  // instead of queueing until Redis is back and stalling every send.
  const options = {
    lazyConnect: false,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    commandTimeout: 500,
  };
  const redis = (
    opts.nodes
      ? new Cluster(opts.nodes, { redisOptions: options })
      : new Redis(opts.url ?? "redis://127.0.0.1:6379", options)
  ) as Client;
  redis.on("error", () => {
    // Reported through failed `take` calls; ioredis reconnects by itself.
  });
  redis.defineCommand("rlTake", { numberOfKeys: 1, lua: TAKE_SCRIPT });
  redis.defineCommand("rlTakeMany", { lua: TAKE_MANY_SCRIPT });
  const prefix = opts.keyPrefix ?? "";
  return {
    async take(requests) {
      if (requests.length === 0) return [];
      const now = Date.now();
      if (!opts.nodes) {
        // A single Redis: every bucket in one script call (KEYS, then TAKE_MANY_SCRIPT's ARGV).
        const n = requests.length;
        const args: Array<string | number> = [];
        const policies = new Map<RateLimitPolicy, number>();
        const perKey: number[] = [];
        for (const r of requests) {
          args.push(rateLimitKey(prefix, r.policy.name, r.subject));
          let j = policies.get(r.policy);
          if (j === undefined) policies.set(r.policy, (j = policies.size + 1));
          perKey.push(j, r.cost ?? 1);
        }
        args.push(now, policies.size);
        for (const policy of policies.keys()) args.push(policy.capacity, policy.refillPerSecond);
        for (const x of perKey) args.push(x);
        const flat = await redis.rlTakeMany(n, ...args);
        return requests.map((_, i) => ({ allowed: flat[2 * i] === 1, retryAfterMs: flat[2 * i + 1] ?? 0 }));
      }
      // A cluster: buckets live on different slots, so one script call per bucket, pipelined.
      const pipeline = redis.pipeline() as unknown as {
        rlTake: Client["rlTake"];
        exec(): Promise<Array<[Error | null, unknown]> | null>;
      };
      for (const r of requests) {
        void pipeline.rlTake(
          rateLimitKey(prefix, r.policy.name, r.subject),
          r.policy.capacity,
          r.policy.refillPerSecond,
          r.cost ?? 1,
          now,
        );
      }
      const results = (await pipeline.exec()) ?? [];
      return results.map(([err, value]) => {
        if (err) throw err;
        const [allowed, retry] = value as [number, number];
        return { allowed: allowed === 1, retryAfterMs: retry };
      });
    },
    async close() {
      redis.disconnect();
    },
  };
}

/** The same buckets in process memory (embedded single-instance mode and unit tests). */
export function createMemoryRateLimiter(opts: { now?: () => number } = {}): RateLimiter {
  const buckets = new Map<string, { tokens: number; ts: number }>();
  const now = opts.now ?? Date.now;
  return {
    async take(requests) {
      const t = now();
      return requests.map((r) => {
        const key = rateLimitKey("", r.policy.name, r.subject);
        const b = buckets.get(key) ?? { tokens: r.policy.capacity, ts: t };
        b.tokens = Math.min(
          r.policy.capacity,
          b.tokens + (Math.max(0, t - b.ts) * r.policy.refillPerSecond) / 1000,
        );
        b.ts = t;
        buckets.set(key, b);
        const cost = r.cost ?? 1;
        if (b.tokens >= cost) {
          b.tokens -= cost;
          return { allowed: true, retryAfterMs: 0 };
        }
        return {
          allowed: false,
          retryAfterMs: Math.ceil(((cost - b.tokens) * 1000) / r.policy.refillPerSecond),
        };
      });
    },
    async close() {
      buckets.clear();
    },
  };
}
