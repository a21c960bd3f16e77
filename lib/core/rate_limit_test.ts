import { assert, assertEquals } from "../../tests/support/assert.ts";
import { TokenBuckets } from "./rate_limit.ts";
import { sanitized } from "../../tests/support/util.ts";

/** A wait rounded up to whole milliseconds may be 1 ms longer through floating point. */
function assertWait(actual: number, expected: number): void {
  assert(actual === expected || actual === expected + 1, `wait ${actual}, expected ${expected}`);
}

Deno.test("TokenBuckets allows a burst, then refuses with the wait until the next token", sanitized, () => {
  const buckets = new TokenBuckets(1, 2);
  assert(buckets.enabled);
  assertEquals(buckets.take("alice", 0), 0);
  assertEquals(buckets.take("alice", 0), 0);
  assertEquals(buckets.take("alice", 0), 1000);
  assertWait(buckets.take("alice", 250), 750);
  assertWait(buckets.take("alice", 999), 1);
  assertEquals(buckets.take("alice", 1000), 0, "one token refilled after a second");
  assertEquals(buckets.take("alice", 1000), 1000);
});

Deno.test("TokenBuckets refills at the rate and never beyond the burst", sanitized, () => {
  const buckets = new TokenBuckets(10, 3);
  for (let i = 0; i < 3; i++) assertEquals(buckets.take("k", 0), 0);
  assertEquals(buckets.take("k", 0), 100);
  // A long pause refills to the burst, not more.
  const later = 1_000_000;
  for (let i = 0; i < 3; i++) assertEquals(buckets.take("k", later), 0);
  assert(buckets.take("k", later) > 0);
  // Half a token after 50 ms: still refused, with the rest of the wait.
  assertWait(buckets.take("k", later + 50), 50);
  assertEquals(buckets.take("k", later + 100), 0);
});

Deno.test("TokenBuckets keeps each key apart", sanitized, () => {
  const buckets = new TokenBuckets(1, 1);
  assertEquals(buckets.take("a", 0), 0);
  assert(buckets.take("a", 0) > 0);
  assertEquals(buckets.take("b", 0), 0);
  assertEquals(buckets.size, 2);
});

Deno.test("TokenBuckets with rate 0 is disabled and allows everything", sanitized, () => {
  const buckets = new TokenBuckets(0, 1);
  assert(!buckets.enabled);
  for (let i = 0; i < 1000; i++) assertEquals(buckets.take("k", 0), 0);
  assertEquals(buckets.peek("k", 0), 0);
  assertEquals(buckets.size, 0, "nothing is remembered");
});

Deno.test("TokenBuckets peek reports the wait without taking a token", sanitized, () => {
  const buckets = new TokenBuckets(1, 2);
  assertEquals(buckets.peek("new", 0), 0, "an unknown key may go");
  assertEquals(buckets.size, 0, "peeking creates nothing");
  buckets.take("k", 0);
  assertEquals(buckets.peek("k", 0), 0);
  assertEquals(buckets.peek("k", 0), 0, "peek does not consume");
  buckets.take("k", 0);
  assertEquals(buckets.peek("k", 0), 1000);
  assertWait(buckets.peek("k", 400), 600);
  assertEquals(buckets.peek("k", 1000), 0);
});

Deno.test("TokenBuckets reset forgets a key", sanitized, () => {
  const buckets = new TokenBuckets(1, 1);
  buckets.take("k", 0);
  assert(buckets.peek("k", 0) > 0);
  buckets.reset("k");
  assertEquals(buckets.peek("k", 0), 0);
  assertEquals(buckets.take("k", 0), 0);
});

Deno.test("TokenBuckets handles slow rates such as one failure every 12 s", sanitized, () => {
  const buckets = new TokenBuckets(1 / 12, 5);
  for (let i = 0; i < 5; i++) assertEquals(buckets.take("user", 0), 0);
  assertEquals(buckets.take("user", 0), 12_000);
  assertWait(buckets.peek("user", 6_000), 6_000);
  assertEquals(buckets.peek("user", 12_000), 0);
});

Deno.test("TokenBuckets never reports a wait of 0 ms while refusing", sanitized, () => {
  const buckets = new TokenBuckets(1000, 1);
  buckets.take("k", 0);
  const wait = buckets.take("k", 0.9999);
  assert(wait >= 1, `wait ${wait}`);
});

Deno.test("TokenBuckets forgets full buckets once it holds many keys", sanitized, () => {
  const buckets = new TokenBuckets(1, 1);
  for (let i = 0; i < 10_000; i++) buckets.take(`key-${i}`, 0);
  assertEquals(buckets.size, 10_000);
  // Much later every bucket is full again: adding a key prunes them.
  buckets.take("late", 10_000);
  assert(buckets.size < 100, `size ${buckets.size}`);
  assertEquals(buckets.take("late", 10_000), 1000, "the new key's bucket works");
});

Deno.test("TokenBuckets keeps a busy old key while forgetting the full buckets around it", sanitized, () => {
  const buckets = new TokenBuckets(1, 1);
  buckets.take("busy", 0);
  for (let i = 0; i < 10_000; i++) buckets.take(`key-${i}`, 0);
  // "busy" was added first but is updated last: it is not full again when the others are.
  assertEquals(buckets.take("busy", 9_500), 0);
  assert(buckets.take("busy", 9_500) > 0, "busy is empty now");
  buckets.take("late", 10_000);
  assertEquals(buckets.size, 2, "only busy and late remain");
  assert(buckets.peek("busy", 10_000) > 0, "busy kept its state: still waiting for a token");
});

Deno.test("TokenBuckets past its key cap forgets the least recently updated keys first", sanitized, () => {
  const buckets = new TokenBuckets(1 / 3, 1);
  for (let i = 0; i < 100_000; i++) buckets.take(`key-${i}`, 0);
  // Every bucket is empty, none full again yet; key-0 is updated again, so key-1 is now the oldest.
  buckets.take("key-0", 1);
  buckets.take("new", 2);
  assertEquals(buckets.size, 100_000, "one key made room for the new one");
  assertEquals(buckets.peek("key-1", 2), 0, "key-1 was forgotten");
  assert(buckets.peek("key-0", 2) > 0, "key-0, updated recently, is kept");
  assert(buckets.peek("key-2", 2) > 0, "key-2 is kept");
});
