// One ordered sequence of committed rows that this server delivers: the lobby (ids with holes) or
// one room (ids 1, 2, 3, … with no gap). It remembers how far it has delivered, how far it knows
// rows to be committed, and its one catch-up read in progress.

export interface FeedRow {
  id: number;
}

/** Reads the committed rows of one feed in (after, through], ids ascending, at most `limit`. */
export type ReadRows = (after: number, through: number, limit: number) => Promise<FeedRow[]>;

/** A catch-up read's rows, waiting for the own batches sent before it to be answered. */
export interface ReadResult {
  rows: FeedRow[];
  /** Every committed row up to this id is in `rows` (from the feed's last delivered id on). */
  through: number;
  /** Own batches sent before the read was issued: their answers come first. */
  ownBefore: number;
}

/** Rows read per catch-up query. */
export const CATCH_UP_PAGE = 1000;
export const RETRY_MIN_MS = 100;
export const RETRY_MAX_MS = 2000;

export class Feed {
  readonly key: string;
  readonly read: ReadRows;
  readonly deliver: (rows: FeedRow[]) => void;
  /** Every row up to this id is delivered (or never will be: a hole). */
  lastDelivered: number;
  /** The highest id known to be committed: catch-up reads go up to it. */
  target: number;
  reading = false;
  result: ReadResult | undefined;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  retryDelay = RETRY_MIN_MS;

  constructor(key: string, from: number, read: ReadRows, deliver: (rows: FeedRow[]) => void) {
    this.key = key;
    this.lastDelivered = from;
    this.target = from;
    this.read = read;
    this.deliver = deliver;
  }

  /** A catch-up read is wanted: rows up to the target are missing and none is under way or waiting. */
  get wantsRead(): boolean {
    return !this.reading && this.result === undefined && this.retryTimer === undefined &&
      this.target > this.lastDelivered;
  }

  /** Next wait before retrying a failed read (doubling up to RETRY_MAX_MS). */
  nextRetryDelay(): number {
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    return delay;
  }

  stopRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }
}
