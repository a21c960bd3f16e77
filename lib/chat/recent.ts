// The newest messages in memory, so most get_history requests never touch the database.
//
// Invariant: the window holds every stored message with id ≥ its oldest id (or every message at
// all, when `complete`). It is filled from the database at start-up and then by the ordered
// message stream (every server's commits, in id order, each once), which keeps that true.

import type { StoredMessage } from "../store/message_stream.ts";
import type { HistoryQuery } from "../wire/protocol.ts";

export class RecentMessages {
  readonly #capacity: number;
  /** Oldest first; the window is `#messages[#start..]`, older entries wait for compaction. */
  #messages: StoredMessage[] = [];
  /** Index of the window's oldest message in `#messages`. */
  #start = 0;
  /** True while the window holds every message ever stored. */
  #complete = true;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** How many messages the window keeps. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Replaces the window with the newest of `messages` (oldest first); `all` = the database holds no others. */
  reset(messages: StoredMessage[], all: boolean): void {
    this.#messages = messages.slice(-this.#capacity);
    this.#start = 0;
    this.#complete = all && messages.length <= this.#capacity;
  }

  /**
   * Appends newly committed messages, which have larger ids than any before. Amortised O(batch):
   * messages that fall out of the window are dropped in one copy once they number `capacity`.
   */
  append(messages: StoredMessage[]): void {
    for (const message of messages) this.#messages.push(message);
    const start = this.#messages.length - this.#capacity;
    if (start > this.#start) {
      this.#start = start;
      this.#complete = false;
    }
    if (this.#start >= this.#capacity) {
      this.#messages = this.#messages.slice(this.#start);
      this.#start = 0;
    }
  }

  /** The answer to `query` if the window alone can give it exactly, else undefined. */
  query(query: HistoryQuery): StoredMessage[] | undefined {
    const after = query.after ?? -1;
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const messages = this.#messages;
    const first = this.#start;
    const oldest = messages.length > first ? messages[first].id : Number.MAX_SAFE_INTEGER;
    // Ids in (after, oldest) may exist outside the window, unless it holds everything.
    const coversLowerEnd = this.#complete || after + 1 >= oldest;
    const start = lowerBound(messages, first, after + 1);
    const end = lowerBound(messages, first, before);
    const count = Math.max(0, end - start);
    if (query.after !== undefined) {
      // The oldest `limit` after `after`: exact when no uncached id can come first.
      if (!coversLowerEnd) return undefined;
      return messages.slice(start, start + Math.min(count, query.limit));
    }
    // The newest `limit` below `before`: exact when the window alone has enough, or has everything.
    if (count >= query.limit) return messages.slice(end - query.limit, end);
    return coversLowerEnd ? messages.slice(start, end) : undefined;
  }
}

/** Index of the first message at or after `from` with id ≥ `id`. */
function lowerBound(messages: StoredMessage[], from: number, id: number): number {
  let low = from;
  let high = messages.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (messages[mid].id < id) low = mid + 1;
    else high = mid;
  }
  return low;
}
