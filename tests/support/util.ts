// Small helpers every kind of test uses: sanitizer options, sleeping, polling until a condition holds.
// No database and no network, so unit tests beside the source (lib/, client/) import it too.

import { fail } from "./assert.ts";

/** Sanitizers on (Deno 2.8+ turns them off by default). */
export const sanitized = { sanitizeOps: true, sanitizeResources: true, sanitizeExit: true } as const;

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

/** Lets a reader sleep until data arrives (wake) or its time runs out; every wait has a timeout. */
export class Wakeup {
  #waiter: (() => void) | undefined;

  /** Ends the wait in progress, if any. */
  wake(): void {
    this.#waiter?.();
  }

  /** Resolves on the next wake(), or after `ms`. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#waiter = () => {
        this.#waiter = undefined;
        done();
      };
    });
  }
}
