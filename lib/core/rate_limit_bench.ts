// Cost of a new key in a TokenBuckets that already holds 1,000 to 100,000 keys: it should not grow
// with the count (a flood of new addresses or usernames must not cost more per key as it grows).
// Run: deno bench lib/core/rate_limit_bench.ts

import { TokenBuckets } from "./rate_limit.ts";

const KEYS_PER_ITERATION = 1_000;

/** Failed-login settings (one every 3 s, burst 20): no bucket is full again during the run. */
function filled(keys: number): TokenBuckets {
  const buckets = new TokenBuckets(1 / 3, 20);
  for (let i = 0; i < keys; i++) buckets.take(`held-${i}`, 0);
  return buckets;
}

for (const held of [1_000, 10_000, 30_000, 100_000]) {
  const buckets = filled(held);
  let next = 0;
  Deno.bench({
    name: `${KEYS_PER_ITERATION} new keys with ${held.toLocaleString("en")} held`,
    group: "new keys",
    baseline: held === 1_000,
    fn() {
      // Each new key is forgotten again, so the count stays where it was set.
      for (let i = 0; i < KEYS_PER_ITERATION; i++) {
        const key = `new-${next++}`;
        buckets.take(key, 0);
        buckets.reset(key);
      }
    },
  });
}
