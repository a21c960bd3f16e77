import { assert, assertEquals } from "../tests/support/assert.ts";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
import { sanitized } from "../tests/support/util.ts";

Deno.test({
  name: "backoffDelay doubles its ceiling per attempt, from the initial delay",
  ...sanitized,
  fn() {
    const policy = { initialMs: 100, maxMs: 100_000 };
    assertEquals([0, 1, 2, 3].map((attempt) => backoffDelay(attempt, () => 1, policy)), [100, 200, 400, 800]);
  },
});

Deno.test({
  name: "backoffDelay never passes the cap, however many attempts",
  ...sanitized,
  fn() {
    for (const attempt of [10, 31, 1000, Number.MAX_SAFE_INTEGER]) {
      assertEquals(backoffDelay(attempt, () => 1), DEFAULT_BACKOFF.maxMs);
    }
  },
});

Deno.test({
  name: "backoffDelay jitters within the upper half of the ceiling",
  ...sanitized,
  fn() {
    const policy = { initialMs: 1000, maxMs: 60_000 };
    assertEquals(backoffDelay(2, () => 0, policy), 2000);
    assertEquals(backoffDelay(2, () => 0.5, policy), 3000);
    assertEquals(backoffDelay(2, () => 1, policy), 4000);
    for (let i = 0; i < 100; i++) {
      const delay = backoffDelay(3, Math.random, policy);
      assert(delay >= 4000 && delay <= 8000, `delay ${delay}`);
    }
  },
});

Deno.test({
  name: "backoffDelay treats odd inputs as the nearest sane ones",
  ...sanitized,
  fn() {
    assertEquals(backoffDelay(-3, () => 1), DEFAULT_BACKOFF.initialMs);
    assertEquals(backoffDelay(0, () => 7), DEFAULT_BACKOFF.initialMs);
    assertEquals(backoffDelay(0, () => -1), DEFAULT_BACKOFF.initialMs / 2);
  },
});
