/**
 * Every Redis key the rate limiter writes, built here and nowhere else:
 *
 *   `${prefix}rl:{${subject}}:${policy}`   a token bucket (hash: tokens, ts), expiring when full
 *
 * `subject` names who is limited (a device `acct.dev`, a pair `acct.dev>acct`, an account, a
 * handle); the braces hash-tag it so one subject's buckets share a Redis Cluster slot.
 */
export function rateLimitKey(prefix: string, policy: string, subject: string): string {
  return `${prefix}rl:{${subject}}:${policy}`;
}
