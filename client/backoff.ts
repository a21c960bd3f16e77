// Reconnect delays: exponential, capped, with jitter so that many clients dropped at once by a
// server restart do not all come back in the same instant. Pure.

export interface BackoffPolicy {
  /** Upper bound of the first delay. */
  readonly initialMs: number;
  /** No delay is longer than this. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 10_000 };

/**
 * The delay before reconnect attempt `attempt` (0 for the first): a ceiling that doubles per
 * attempt up to `maxMs`, and a random point in its upper half ("equal jitter"), so a delay is
 * never near zero, which would hammer a server that is down.
 */
export function backoffDelay(attempt: number, random: () => number = Math.random, policy = DEFAULT_BACKOFF): number {
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 30);
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  const unit = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + unit * ceiling / 2);
}
