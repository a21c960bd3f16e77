// Exactly-once, in-order delivery of messages that come from two sources at once: the live
// broadcasts of a fresh connection and the history pages that catch up on what came before it.
// Pure.
//
// Why buffering is enough: a logged-in connection receives every message broadcast after its
// login, in id order. So once login is done, the broadcasts from the first one received on (id B)
// are complete, and history only has to fill the ids between the last one delivered and B.

import type { ChatMessage } from "./wire.ts";

/** Live messages held while catching up; past this the buffer is dropped and history fills in. */
export const MAX_BUFFERED = 10_000;

export class Sequencer {
  /** Highest id delivered; undefined before the first sync. */
  #lastId: number | undefined;
  #buffering = false;
  /** Live messages since buffering began (or since it last overflowed), in arrival = id order. */
  #buffer: ChatMessage[] = [];
  readonly #maxBuffered: number;

  constructor(maxBuffered = MAX_BUFFERED) {
    this.#maxBuffered = maxBuffered;
  }

  get lastId(): number | undefined {
    return this.#lastId;
  }

  /** Called right after a login, before any history request: live messages wait from now on. */
  hold(): void {
    this.#buffering = true;
    this.#buffer = [];
  }

  /** A live broadcast: returns what to deliver now (nothing while holding). */
  live(message: ChatMessage): ChatMessage[] {
    if (!this.#buffering) return this.#accept([message]);
    // The dropped ones were committed before they were broadcast: history will return them.
    if (this.#buffer.length >= this.#maxBuffered) this.#buffer = [];
    this.#buffer.push(message);
    return [];
  }

  /** Sets the starting point without delivering anything (a sync that shows no history). */
  startAfter(id: number): void {
    if (this.#lastId === undefined || id > this.#lastId) this.#lastId = id;
  }

  /**
   * The server's history no longer reaches `lastId` (its database was replaced): go on from `id`,
   * or every new message, with its smaller id, would be taken for one already delivered.
   */
  rebase(id: number): void {
    this.#lastId = id;
  }

  /** A history page, oldest first: returns the messages not delivered before. */
  page(messages: readonly ChatMessage[]): ChatMessage[] {
    return this.#accept(messages);
  }

  /**
   * After a catch-up page (`get_history` with `after` = lastId before it): true when nothing can
   * be missing any more: the page was empty, or it reached the first buffered broadcast.
   */
  caughtUp(page: readonly ChatMessage[]): boolean {
    if (page.length === 0) return true;
    const first = this.#buffer[0];
    return first !== undefined && page[page.length - 1].id >= first.id;
  }

  /** Ends holding: returns the buffered messages not yet delivered, in order. */
  release(): ChatMessage[] {
    this.#buffering = false;
    const buffered = this.#buffer;
    this.#buffer = [];
    return this.#accept(buffered);
  }

  #accept(messages: readonly ChatMessage[]): ChatMessage[] {
    const out: ChatMessage[] = [];
    for (const message of messages) {
      if (this.#lastId !== undefined && message.id <= this.#lastId) continue;
      this.#lastId = message.id;
      out.push(message);
    }
    return out;
  }
}
