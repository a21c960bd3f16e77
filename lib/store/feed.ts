// One ordered sequence of committed rows that this server delivers: the lobby (ids with holes) or
// one room (ids 1, 2, 3, … with no gap). It remembers how far it has delivered, how far it knows
// rows to be committed, its one catch-up read in progress, and the ranges of rows it holds that
// cannot be delivered yet (read, or carried by the bus, ahead of what is delivered).

export interface FeedRow {
  id: number;
}

/** Reads the committed rows of one feed in (after, through], ids ascending, at most `limit`. */
export type ReadRows = (after: number, through: number, limit: number) => Promise<FeedRow[]>;

/**
 * Rows known to be all the committed rows in (from, through]: a catch-up read's, or another
 * server's batch carried by the bus. Merged once what is delivered reaches `from`, and once the
 * own batches sent before it arrived are answered (so that no own message is delivered without its
 * sender's copy).
 */
export interface KnownRange {
  from: number;
  through: number;
  rows: FeedRow[];
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
  /** Ranges waiting to be merged, in arrival order. */
  ranges: KnownRange[] = [];
  /** Since when a range has waited for rows before it (a gap), if one has. */
  gapSince: number | undefined;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  retryDelay = RETRY_MIN_MS;

  constructor(key: string, from: number, read: ReadRows, deliver: (rows: FeedRow[]) => void) {
    this.key = key;
    this.lastDelivered = from;
    this.target = from;
    this.read = read;
    this.deliver = deliver;
  }

  /** A catch-up read is wanted: rows up to the target are missing, and none is under way or waiting to merge. */
  get wantsRead(): boolean {
    return !this.reading && this.retryTimer === undefined && this.target > this.lastDelivered &&
      !this.ranges.some((range) => range.from <= this.lastDelivered);
  }

  /** Nothing to do: everything known committed is delivered, and no range, read or retry is pending. */
  get isIdle(): boolean {
    return !this.reading && this.retryTimer === undefined && this.ranges.length === 0 &&
      this.target <= this.lastDelivered;
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
