// Password work shared fairly between addresses (contract v1.2): bcrypt runs on a few native
// threads, and hashes wait in a line per address, served in turn, so one address's queue of
// hashes never delays another address's login by more than one hash.

import { ChatError } from "../core/errors.ts";

/**
 * Hashes one address may have waiting; past it, its attempts are refused until the line moves. A
 * bound on memory only: the login and registration throttles keep an address's line far shorter.
 */
export const MAX_QUEUED_PER_ADDRESS = 1000;
/** What a refused attempt is told to wait: about the time a few hashes take. */
const QUEUE_FULL_RETRY_MS = 1000;

interface Waiter {
  start(): void;
}

export class FairHashQueue {
  #free: number;
  /** Each address's waiting hashes, oldest first; the map's order is the turn order. */
  readonly #lines = new Map<string, Waiter[]>();

  constructor(slots: number) {
    this.#free = slots;
  }

  /** Runs `task` when a thread is free and it is this address's turn. */
  async run<T>(address: string, task: () => Promise<T>): Promise<T> {
    if (this.#free > 0 && this.#lines.size === 0) {
      this.#free--;
    } else {
      const line = this.#lines.get(address) ?? [];
      if (line.length >= MAX_QUEUED_PER_ADDRESS) {
        throw new ChatError("too_many_attempts", "Too many attempts waiting from your address, try again later", {
          retryAfterMs: QUEUE_FULL_RETRY_MS,
        });
      }
      await new Promise<void>((resolve) => {
        line.push({ start: resolve });
        if (!this.#lines.has(address)) this.#lines.set(address, line);
      });
    }
    try {
      return await task();
    } finally {
      this.#next();
    }
  }

  /** Hands the freed thread to the next address in turn (which then goes to the back of the turn order). */
  #next(): void {
    const turn = this.#lines.entries().next();
    if (turn.done) {
      this.#free++;
      return;
    }
    const [address, line] = turn.value;
    const waiter = line.shift()!;
    this.#lines.delete(address);
    if (line.length > 0) this.#lines.set(address, line);
    waiter.start();
  }
}
