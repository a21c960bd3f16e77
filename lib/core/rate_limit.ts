// Token buckets keyed by a string (a user, a username, an address), with a bounded key count.

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** Keys whose bucket is full again are forgotten once the map holds more than this. */
const PRUNE_ABOVE_KEYS = 10_000;
/** A hard cap, so that a flood of distinct keys cannot grow memory without bound. */
const MAX_KEYS = 100_000;

export class TokenBuckets {
  readonly #ratePerMs: number;
  readonly #burst: number;
  /**
   * Least recently updated first: every update moves its key to the end (Map keeps insertion
   * order), so the keys whose buckets are full again are always at the front, and forgetting them
   * never scans the rest (amortised O(1) per new key).
   */
  readonly #buckets = new Map<string, Bucket>();

  /** `ratePerSec` of 0 disables the limit: every take succeeds. */
  constructor(ratePerSec: number, burst: number) {
    this.#ratePerMs = ratePerSec / 1000;
    this.#burst = burst;
  }

  get enabled(): boolean {
    return this.#ratePerMs > 0;
  }

  /** Takes one token: returns 0 when allowed, else the milliseconds until one is available. */
  take(key: string, now?: number): number {
    if (!this.enabled) return 0;
    const bucket = this.#refill(key, now ?? performance.now());
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return this.#waitMs(bucket);
  }

  /** The milliseconds until a token is available, without taking one (0 = available now). */
  peek(key: string, now?: number): number {
    if (!this.enabled) return 0;
    now ??= performance.now();
    const bucket = this.#buckets.get(key);
    if (!bucket) return 0;
    const tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.updatedAt) * this.#ratePerMs);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.#ratePerMs);
  }

  reset(key: string): void {
    this.#buckets.delete(key);
  }

  get size(): number {
    return this.#buckets.size;
  }

  #refill(key: string, now: number): Bucket {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      if (this.#buckets.size >= PRUNE_ABOVE_KEYS) this.#prune(now);
      bucket = { tokens: this.#burst, updatedAt: now };
      this.#buckets.set(key, bucket);
      return bucket;
    }
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.updatedAt) * this.#ratePerMs);
    bucket.updatedAt = now;
    this.#buckets.delete(key);
    this.#buckets.set(key, bucket);
    return bucket;
  }

  #waitMs(bucket: Bucket): number {
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#ratePerMs));
  }

  /** Forgets the full buckets at the front, then, past the cap, the least recently updated keys. */
  #prune(now: number): void {
    const fullAfterMs = this.#burst / this.#ratePerMs;
    // Each key is deleted at most once per insertion, so this loop is amortised O(1) per new key.
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.updatedAt < fullAfterMs && this.#buckets.size < MAX_KEYS) break;
      this.#buckets.delete(key);
    }
  }
}
