// Latency histograms and percentiles. Values are microseconds; buckets are ~1% wide on a log
// scale, so percentiles are exact to about 1% whatever the count, and histograms merge by adding.

/** Buckets per natural-log unit: 100 gives ~1% resolution. */
const BUCKETS_PER_LOG_UNIT = 100;
/** Up to e^19 µs ≈ 178 million µs ≈ 3 minutes; anything above lands in the last bucket. */
const BUCKET_COUNT = 19 * BUCKETS_PER_LOG_UNIT + 1;

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
    const i = Math.min(BUCKET_COUNT - 1, Math.floor(Math.log1p(v) * BUCKETS_PER_LOG_UNIT));
    this.counts[i]++;
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
      if (seen >= rank) return Math.min(this.max, Math.expm1((i + 1) / BUCKETS_PER_LOG_UNIT));
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
