// Gives memory back after a burst. A login storm (every client reconnecting after a restart, say)
// leaves tens of MB of garbage in V8's old generation; a server that then goes quiet allocates
// too little to reach the next major GC, so its RSS stays up by that much for hours. Measured at
// 5,000 idle logged-in connections: 12.0 KB RSS per connection held, 6.5 KB after one collection.
// So when the process has grown well past what the last collection left (its RSS: most of what a
// burst leaves is heap pages V8 keeps committed, which the heap's used size does not show) and no
// request came in for a whole tick, collect once. A busy server never qualifies and V8 collects as
// it always does.
//
// Needs V8's --expose-gc (SERVER_V8_FLAGS); without it (a test's in-process server) it does nothing.

/** Growth since the last collection that makes a quiet spell worth a collection. */
const DEFAULT_MIN_GROWTH_BYTES = 16 * 1024 * 1024;
/** Never more often than this, whatever the heap does. */
const MIN_INTERVAL_MS = 10_000;

export class QuietCollector {
  readonly #gc: (() => void) | undefined;
  readonly #minGrowthBytes: number;
  readonly #size: () => number;
  /** The smallest size seen since the last collection (V8's own collections lower it too). */
  #floor = Infinity;
  #lastAt = -Infinity;
  #collections = 0;

  constructor(
    options: { gc?: () => void; minGrowthBytes?: number; size?: () => number } = {},
  ) {
    const exposed = (globalThis as { gc?: (options?: object) => void }).gc;
    // "last-resort" (several full collections that also give freed pages back to the system):
    // a plain gc() frees the heap but keeps its pages, and the RSS stays where it was.
    this.#gc = options.gc ??
      (exposed ? () => exposed({ type: "major", execution: "sync", flavor: "last-resort" }) : undefined);
    this.#minGrowthBytes = options.minGrowthBytes ?? DEFAULT_MIN_GROWTH_BYTES;
    this.#size = options.size ?? (() => Deno.memoryUsage().rss);
  }

  /** Collections run so far (for /metrics). */
  get collections(): number {
    return this.#collections;
  }

  /** Called about once a second with whether any request came in since the last call. */
  tick(busy: boolean, now: number): void {
    if (!this.#gc) return;
    const used = this.#size();
    if (used < this.#floor) this.#floor = used;
    if (busy || used - this.#floor < this.#minGrowthBytes || now - this.#lastAt < MIN_INTERVAL_MS) return;
    this.#gc();
    this.#collections++;
    this.#lastAt = now;
    this.#floor = this.#size();
  }
}
