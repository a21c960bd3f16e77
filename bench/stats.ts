// Latency histograms and percentiles. Values are microseconds; buckets are at most 1.6% wide, so
// percentiles are exact to that whatever the count, and histograms merge by adding.

/**
 * Buckets: exact below 128 µs, then 64 per power of two (HDR-style, at most 1.6% wide), up to
 * 2^31 µs (35 minutes). Found with integer operations only: recording is on the hot path.
 */
const SUB_BUCKETS = 64;
const LINEAR_LIMIT = 128;
const BUCKET_COUNT = LINEAR_LIMIT + (31 - 7) * SUB_BUCKETS;

function bucketOf(us: number): number {
  const v = us >= 0x7fffffff ? 0x7fffffff : us > 0 ? us | 0 : 0;
  if (v < LINEAR_LIMIT) return v;
  const e = 31 - Math.clz32(v); // 7..30
  return LINEAR_LIMIT + (e - 7) * SUB_BUCKETS + ((v >>> (e - 6)) - SUB_BUCKETS);
}

/** The largest value in bucket `i`. */
function upperEdge(i: number): number {
  if (i < LINEAR_LIMIT) return i;
  const k = i - LINEAR_LIMIT;
  const e = 7 + Math.floor(k / SUB_BUCKETS);
  const m = SUB_BUCKETS + (k % SUB_BUCKETS);
  return (m + 1) * 2 ** (e - 6) - 1;
}

export interface LatencySummary {
  count: number;
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
  mean_ms: number | null;
}

export class Histogram {
  readonly counts = new Float64Array(BUCKET_COUNT);
  count = 0;
  sum = 0;
  max = 0;

  /** Records one latency in microseconds (negative values, from clock skew, count as 0). */
  record(us: number): void {
    const v = us > 0 ? us : 0;
    this.counts[bucketOf(v)]++;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  merge(other: Histogram): void {
    for (let i = 0; i < BUCKET_COUNT; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
    if (other.max > this.max) this.max = other.max;
  }

  /** The q-quantile (0 < q ≤ 1) in microseconds: the upper edge of its bucket, capped at the max seen. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, upperEdge(i));
    }
    return this.max;
  }

  summary(): LatencySummary {
    const ms = (us: number | null) => us === null ? null : round(us / 1000, 3);
    return {
      count: this.count,
      p50_ms: ms(this.quantile(0.5)),
      p90_ms: ms(this.quantile(0.9)),
      p99_ms: ms(this.quantile(0.99)),
      max_ms: this.count ? ms(this.max) : null,
      mean_ms: this.count ? ms(this.sum / this.count) : null,
    };
  }
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Wall-clock microseconds since the epoch, comparable between processes on this machine. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
