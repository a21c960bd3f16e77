// Group commit: sends accepted while a batch is on its way to the database are gathered into the
// next batch, so that one round trip and one commit serve many messages.
//
// Contract: batches are handed to `store` one after another, in the order they were opened, at
// most MAX_BATCHES_IN_FLIGHT at once; `store` MUST put them on one ordered connection (they then
// execute and commit in that order). The next batch goes as soon as the database has answered one
// (whatever delivery is doing), so that senders get their answers during an outage too.

/** Upper bounds of one batch, so one statement stays a reasonable size. */
const MAX_BATCH_ITEMS = 1000;
const MAX_BATCH_CHARS = 512_000;
/**
 * Batches on their way to the database at once. A second one is sent before the first returns
 * only when it is already large: every batch costs each connection a write, so small batches are
 * better gathered while one is in flight, and pipelining pays only under load.
 */
const MAX_BATCHES_IN_FLIGHT = 2;
const MIN_PIPELINED_BATCH = 128;

export interface Batch<Item> {
  readonly items: Item[];
  chars: number;
}

/** Stores one batch; settles (either way) once the database has answered it. */
export type StoreBatch<Item> = (batch: Batch<Item>) => Promise<unknown>;

export class GroupCommit<Item> {
  readonly #store: StoreBatch<Item>;
  /** Batches not yet sent; the last one takes new items while under the bounds. */
  readonly #waiting: Batch<Item>[] = [];
  #inFlight = 0;
  #flushScheduled = false;

  constructor(store: StoreBatch<Item>) {
    this.#store = store;
  }

  /**
   * The batch that takes the next item of `chars` characters: the last one not yet sent, or a new
   * one when it is full or `separate` asks for one.
   */
  openBatch(chars: number, separate = false): Batch<Item> {
    const last = this.#waiting.at(-1);
    if (last && !separate && last.items.length < MAX_BATCH_ITEMS && last.chars + chars <= MAX_BATCH_CHARS) {
      return last;
    }
    const batch: Batch<Item> = { items: [], chars: 0 };
    this.#waiting.push(batch);
    return batch;
  }

  /** Whether `batch` is still waiting to be sent (and the last one, which new items join). */
  isOpen(batch: Batch<Item> | undefined): boolean {
    return batch !== undefined && this.#waiting.at(-1) === batch;
  }

  /** Adds `item` to `batch` (from openBatch(), in the same turn) and schedules sending it. */
  add(batch: Batch<Item>, item: Item, chars: number): void {
    batch.items.push(item);
    batch.chars += chars;
    this.#scheduleFlush();
  }

  /**
   * Sends the next batch when it should go. After a quiet spell: one macrotask later, so that the
   * items of this turn share it. While a batch is in flight: at once when it returns (what came
   * meanwhile is the next batch), or before that if the waiting batch is already large.
   */
  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#inFlight >= MAX_BATCHES_IN_FLIGHT || this.#waiting.length === 0) return;
    if (this.#inFlight > 0) {
      if (this.#waiting[0].items.length >= MIN_PIPELINED_BATCH) this.#send(this.#waiting.shift()!);
      return;
    }
    this.#flushScheduled = true;
    // A timer, not a microtask: the sends of this turn of the event loop (one read of a
    // pipelining client, or several clients' reads) join the batch first.
    setTimeout(() => {
      this.#flushScheduled = false;
      const batch = this.#waiting.shift();
      if (batch) this.#send(batch);
    }, 0);
  }

  #send(batch: Batch<Item>): void {
    this.#inFlight++;
    const answered = () => {
      this.#inFlight--;
      // Sent at once rather than scheduled: nested zero timers are clamped to 4 ms.
      const next = this.#waiting.shift();
      if (next) this.#send(next);
    };
    this.#store(batch).then(answered, answered);
  }
}
