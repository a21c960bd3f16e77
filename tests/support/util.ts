// Small helpers every kind of test uses: sanitizer options, sleeping, polling until a condition holds,
// words no other run has used.
// No database and no network, so unit tests beside the source (lib/, client/) import it too.

import { fail } from "./assert.ts";

/** Sanitizers on (Deno 2.8+ turns them off by default). */
export const sanitized = { sanitizeOps: true, sanitizeResources: true, sanitizeExit: true } as const;

/** `length` characters drawn at random from `alphabet`. */
export function randomString(alphabet: string, length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/**
 * A word no other run has used (12 random letters): a search for it finds only this test's
 * messages, also in a database kept between runs. Letters only, so that the search's parser keeps
 * it one word.
 */
export function uniqueWord(prefix = ""): string {
  return prefix + randomString("abcdefghijklmnopqrstuvwxyz", 12);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 20 ms until it holds; fails naming `what` after `ms`. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  ms = 5000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * Lets readers sleep until data arrives (wake) or their time runs out; every wait has a timeout.
 * Several may wait at once (a test waiting for a reply while another waits for a broadcast).
 */
export class Wakeup {
  readonly #waiters = new Set<() => void>();

  /** Ends every wait in progress. */
  wake(): void {
    for (const done of this.#waiters) done();
  }

  /** Resolves on the next wake(), or after `ms`. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.#waiters.add(done);
    });
  }
}
