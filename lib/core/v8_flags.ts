// The V8 flags the server runs with. deno.json's start, dev and compile tasks pass them, and so
// do the tests and the bench that start the server themselves.

/**
 * Semi-spaces of 4 MiB instead of V8's 16 MiB: a burst of logins otherwise grows the young
 * generation to ~34 MiB for good, which at 10,000 idle connections is 3–4 KB each. Measured with
 * the bench (idle, 10,000 logged-in connections): 12.3 KB per connection without, 8.4 KB with;
 * fan-out CPU per delivery unchanged (0.369 vs 0.372 ms per 1,000).
 */
/**
 * --expose-gc: the quiet collector (quiet_gc.ts) collects once after a burst, when the server has
 * gone quiet.
 */
export const SERVER_V8_FLAGS = "--max-semi-space-size=4,--expose-gc";
