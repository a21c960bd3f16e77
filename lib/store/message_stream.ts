// The one ordered stream of committed messages. Every message reaches this server's clients
// through it, this server's own and other servers' alike: strictly in id order, exactly once,
// and only after it is committed. The rest of the server does not know whether it is alone.
//
// Why id order is commit order: every writer takes one advisory lock before it draws ids and holds
// it to COMMIT (schema.sql: chat_store_messages() for servers, a trigger for any other INSERT into
// messages, such as the seed's server's). So when a batch with first id N commits, every id below
// N is committed already or never will be (aborted inserts leave holes, which are never waited
// for). Each commit NOTIFYs its last id.
//
// Two sources of rows, merged here:
// - Own batches, sent on the ordered connection. The database answers each with its ids and with
//   the other writers' rows this server had not delivered when it was sent (its gap), so an own
//   batch is delivered the moment it is answered, without another read: a database that goes
//   away right after a commit cannot hold up the answers of the sends behind it.
// - Catch-up reads of (last delivered, bound], where the bound is a committed id: a notified one,
//   or max(id) read on the ordered connection (which puts it in line with own batches). A read's
//   rows are merged only once every own batch sent before the read was issued is answered, so
//   that an own message is never delivered without its sender's own copy.
//
// Contract: own batches MUST be announced (ownBatchSending) in the order they are sent on the
// ordered connection, and settled (committed or failed) in the order they are answered.

import { type Database, databaseErrorFields } from "./db.ts";
import type { Logger } from "../core/log.ts";

/** A lobby message as stored and as clients see it. */
export interface StoredMessage extends Record<string, unknown> {
  id: number;
  sender: string;
  message: string;
  timestamp: string;
}

const NOTIFY_CHANNEL = "chat_messages";
/** Rows read per catch-up query. */
const CATCH_UP_PAGE = 1000;
/** How often the server checks for messages it may not have been told of (a silently dead LISTEN). */
const RESYNC_INTERVAL_MS = 5000;
/** A catch-up read that has not answered by then is cancelled and retried. */
const READ_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

const CATCH_UP_SQL = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages WHERE id > $1::bigint AND id <= $2::bigint ORDER BY id LIMIT $3`;
const NEWEST_ID_SQL = `SELECT COALESCE(max(id), 0)::bigint AS id FROM messages`;

/** What an own batch committed, for its delivery. */
export interface OwnBatch {
  /** Newly stored messages, ids ascending. */
  messages: StoredMessage[];
  /** The highest id the batch drew (its messages', or its duplicates' holes). */
  throughId: number;
  /** Other writers' committed rows after the slot's seenThrough up to throughId, ids ascending. */
  others: StoredMessage[];
  /** False when there were too many others to return: the stream reads them itself. */
  othersComplete: boolean;
  /**
   * Delivers the batch (its senders' replies included) once everything before it is delivered:
   * `fresh` are the rows not delivered yet, others' and its own, ids ascending.
   */
  deliver(fresh: StoredMessage[]): void;
  /** Runs instead, when delivering threw: the batch's senders are still owed an answer. */
  failed(err: unknown): void;
}

/** An own batch between its sending and its answer. */
export interface OwnBatchSlot {
  /** The highest id delivered when the batch was sent: the database returns the rows after it. */
  readonly seenThrough: number;
  committed(batch: OwnBatch): void;
  /** The batch failed (it may have committed all the same: a catch-up then delivers it). */
  failed(): void;
}

/** Delivers other writers' messages (catch-ups), ids ascending. */
export type Deliver = (messages: StoredMessage[]) => void;

interface Slot extends OwnBatchSlot {
  state: "sent" | "committed" | "failed";
  batch: OwnBatch | undefined;
}

/** A catch-up read's rows, waiting for the own batches sent before it to be answered. */
interface ReadResult {
  rows: StoredMessage[];
  /** Every committed row in (from, through] is in `rows`. */
  through: number;
  /** Own batches sent before the read: their answers come first. */
  ownBefore: number;
}

export class MessageStream {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #deliver: Deliver;
  #lastDelivered = 0;
  /** Own batches sent and not yet delivered (or failed), in send order. */
  #own: Slot[] = [];
  #ownSent = 0;
  /** Own batches answered so far (they are answered in send order). */
  #ownAnswered = 0;
  /** The highest id known to be committed: catch-up reads go up to it. */
  #target = 0;
  #reading = false;
  #readResult: ReadResult | undefined;
  #stopped = false;
  #resyncTimer: ReturnType<typeof setInterval> | undefined;
  /** The one pending retry of a failed read or resync. */
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryDelay = RETRY_MIN_MS;
  /** A resync's bound query in flight: further resyncs meanwhile are folded into it. */
  #resyncing = false;

  constructor(db: Database, log: Logger, deliver: Deliver) {
    this.#db = db;
    this.#log = log;
    this.#deliver = deliver;
  }

  /**
   * Starts from `lastId` (everything up to it counts as delivered) and subscribes to other
   * servers' commits; every (re)subscription is followed by a catch-up.
   */
  async start(lastId: number): Promise<void> {
    this.#lastDelivered = lastId;
    this.#target = lastId;
    await this.#db.listen(NOTIFY_CHANNEL, (payload) => this.#notified(payload), () => this.resync());
    if (this.#db.kind === "postgres") {
      this.#resyncTimer = setInterval(() => this.resync(), RESYNC_INTERVAL_MS);
    }
  }

  /** Stops catching up; own batches still in flight are still delivered. */
  stop(): void {
    this.#stopped = true;
    if (this.#resyncTimer !== undefined) clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
  }

  /**
   * Announces an own batch about to be sent on the ordered connection. MUST be called in send
   * order, and the slot settled (committed or failed) in answer order.
   */
  ownBatchSending(): OwnBatchSlot {
    const settle = (state: "committed" | "failed", batch?: OwnBatch) => {
      if (slot.state !== "sent") return;
      slot.state = state;
      slot.batch = batch;
      this.#ownAnswered++;
      this.#advance();
    };
    const slot: Slot = {
      seenThrough: this.#lastDelivered,
      state: "sent",
      batch: undefined,
      committed: (batch) => settle("committed", batch),
      failed: () => settle("failed"),
    };
    this.#ownSent++;
    this.#own.push(slot);
    return slot;
  }

  /**
   * Catches up with everything committed so far: after a (re)subscription, after a failed
   * batch, and every few seconds in case a notification was lost without a reconnect.
   */
  resync(): void {
    if (this.#stopped || this.#resyncing) return;
    this.#resyncing = true;
    // Read on the ordered connection: it sees every own batch sent before it, and none after.
    this.#db.ordered<{ id: number | string }>(NEWEST_ID_SQL, [], { timeoutMs: READ_TIMEOUT_MS }).then(
      (rows) => {
        this.#resyncing = false;
        this.#raiseTarget(Number(rows[0].id));
      },
      (err) => {
        this.#resyncing = false;
        if (this.#stopped) return;
        this.#log.warn("cannot check for new messages; retrying", databaseErrorFields(err));
        this.#retryLater();
      },
    );
  }

  #notified(payload: string): void {
    const through = Number(payload);
    if (Number.isSafeInteger(through)) this.#raiseTarget(through);
  }

  #raiseTarget(through: number): void {
    if (through <= this.#target) return;
    this.#target = through;
    this.#advance();
  }

  /** Delivers whatever can be delivered now, in id order, and starts the read that is needed next. */
  #advance(): void {
    while (this.#deliverOwnHead() || this.#mergeRead());
    this.#readIfNeeded();
  }

  /** Delivers the oldest own batch if it is answered and nothing before it is missing. */
  #deliverOwnHead(): boolean {
    const head = this.#own[0];
    if (!head || head.state === "sent") return false;
    if (head.state === "committed") {
      const batch = head.batch!;
      if (!batch.othersComplete && this.#lastDelivered < firstIdOf(batch) - 1) {
        // Too many others' rows to have come with the answer: read them first.
        this.#target = Math.max(this.#target, firstIdOf(batch) - 1);
        return false;
      }
      const fresh = freshRows(batch, this.#lastDelivered);
      this.#lastDelivered = Math.max(this.#lastDelivered, batch.throughId);
      this.#target = Math.max(this.#target, this.#lastDelivered);
      try {
        batch.deliver(fresh);
      } catch (err) {
        batch.failed(err);
      }
    }
    this.#own.shift();
    return true;
  }

  /** Merges a catch-up read's rows once the own batches sent before it are answered. */
  #mergeRead(): boolean {
    const read = this.#readResult;
    if (!read || this.#ownAnswered < read.ownBefore) return false;
    this.#readResult = undefined;
    // An answered own batch still waiting to be delivered owns its ids: the read stops below them.
    const head = this.#own[0];
    const cap = head?.state === "committed" ? firstIdOf(head.batch!) - 1 : Infinity;
    const rows = read.rows.filter((row) => row.id > this.#lastDelivered && row.id <= cap);
    const through = Math.min(read.through, cap);
    if (through <= this.#lastDelivered) return true;
    this.#lastDelivered = through;
    if (rows.length > 0) {
      try {
        this.#deliver(rows);
      } catch (err) {
        this.#log.error("delivering messages failed", { error: err });
      }
    }
    return true;
  }

  /** Starts one catch-up read when rows up to the target are missing and none is under way. */
  #readIfNeeded(): void {
    if (this.#reading || this.#readResult || this.#retryTimer !== undefined || this.#stopped) return;
    const from = this.#lastDelivered;
    const bound = this.#target;
    if (bound <= from) return;
    this.#reading = true;
    const ownBefore = this.#ownSent;
    this.#db.query<StoredMessage>(CATCH_UP_SQL, [from, bound, CATCH_UP_PAGE], { timeoutMs: READ_TIMEOUT_MS }).then(
      (rows) => {
        this.#reading = false;
        this.#retryDelay = RETRY_MIN_MS;
        // A full page may stop short of the bound: what it covers ends at its last row.
        const through = rows.length === CATCH_UP_PAGE ? rows[rows.length - 1].id : bound;
        this.#readResult = { rows, through, ownBefore };
        this.#advance();
      },
      (err) => {
        this.#reading = false;
        if (this.#stopped) return;
        this.#log.warn("cannot read new messages; retrying", {
          ...databaseErrorFields(err),
          retry_ms: this.#retryDelay,
        });
        this.#retryLater();
      },
    );
  }

  /** One retry pending at most, however many reads and resyncs failed meanwhile. */
  #retryLater(): void {
    if (this.#retryTimer !== undefined) return;
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(this.#retryDelay * 2, RETRY_MAX_MS);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.resync();
      this.#advance();
    }, delay);
  }
}

/** The first id an own batch covers: its first new message's, or (duplicates only) its last drawn. */
function firstIdOf(batch: OwnBatch): number {
  return batch.messages.length > 0 ? batch.messages[0].id : batch.throughId;
}

/** An own batch's rows not delivered yet, others' and its own, ids ascending. */
function freshRows(batch: OwnBatch, lastDelivered: number): StoredMessage[] {
  const rows: StoredMessage[] = [];
  for (const row of batch.others) if (row.id > lastDelivered) rows.push(row);
  for (const row of batch.messages) if (row.id > lastDelivered) rows.push(row);
  return rows;
}
