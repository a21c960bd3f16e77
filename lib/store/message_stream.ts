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
// Contract: steps run one at a time in the order they are queued (MUST NOT overlap). An own
// batch's step is queued when the batch is sent to the database, so that no catch-up step can
// deliver its rows without their senders' own copies. A catch-up reads (last delivered, bound]
// from the database, where the bound is a committed id: a notified id, or max(id) read on the
// ordered connection, which puts it in line with this server's own batches.

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
/**
 * A read of the stream that has not answered by then is cancelled and retried: every own batch's
 * acknowledgement waits behind it, so one hung read must not stall them all.
 */
const READ_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

const CATCH_UP_SQL = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages WHERE id > $1::bigint AND id <= $2::bigint ORDER BY id LIMIT $3`;
const NEWEST_ID_SQL = `SELECT COALESCE(max(id), 0)::bigint AS id FROM messages`;

/** What an own batch committed, for its step in the stream. */
export interface OwnCommit<Extra> {
  /** Newly stored messages, ids ascending. */
  messages: StoredMessage[];
  /** The sender's extras (who sent it, request_id, client_msg_id) per new message id. */
  extras: Map<number, Extra>;
  /** The highest message id the batch refers to (new or, for duplicates, the original). */
  throughId: number;
  /** Runs after the batch's messages (and everything before them) are delivered. */
  afterDelivery(): void;
}

/** Delivers messages, in id order; `extras` names this server's own senders among them. */
export type Deliver<Extra> = (messages: StoredMessage[], extras: Map<number, Extra> | undefined) => void;

export class MessageStream<Extra> {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #deliver: Deliver<Extra>;
  #lastDelivered = 0;
  /** The highest bound a queued catch-up will reach, so that repeated notifications queue nothing. */
  #queuedThrough = 0;
  #chain: Promise<void> = Promise.resolve();
  #stopped = false;
  #resyncTimer: ReturnType<typeof setInterval> | undefined;
  /** Pending retry waits, cut short by stop(). */
  readonly #waits = new Set<() => void>();
  /** The one retry of a failed resync waiting to run (one at most, however many resyncs failed). */
  #retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(db: Database, log: Logger, deliver: Deliver<Extra>) {
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
    this.#queuedThrough = lastId;
    await this.#db.listen(NOTIFY_CHANNEL, (payload) => this.#notified(payload), () => this.resync());
    if (this.#db.kind === "postgres") {
      this.#resyncTimer = setInterval(() => this.resync(), RESYNC_INTERVAL_MS);
    }
  }

  /** Stops catching up; steps already queued still run. */
  stop(): void {
    this.#stopped = true;
    if (this.#resyncTimer !== undefined) clearInterval(this.#resyncTimer);
    for (const wake of this.#waits) wake();
    clearTimeout(this.#retryTimer);
  }

  /**
   * Queues the delivery of an own batch. MUST be called when the batch is sent to the database
   * on the ordered connection, in the same order. `committed` rejects when the batch failed:
   * the caller answers its senders; the stream delivers nothing for it (should it have
   * committed after all, a later catch-up delivers it).
   */
  own(committed: Promise<OwnCommit<Extra>>): Promise<void> {
    // Handled in the step; but the step may start only after `committed` has failed (a catch-up
    // ahead of it retries for as long as the database is away), and a rejection nobody handles
    // by then ends the process.
    committed.catch(() => {});
    return this.#queue(async () => {
      let commit: OwnCommit<Extra>;
      try {
        commit = await committed;
      } catch {
        return;
      }
      const { messages } = commit;
      // Others' messages (or a hole) before ours: read them first, so that order holds.
      const first = messages.length > 0 ? messages[0].id - 1 : commit.throughId;
      if (first > this.#lastDelivered) await this.#catchUp(first);
      const fresh = messages.length > 0 && messages[0].id <= this.#lastDelivered
        ? messages.filter((m) => m.id > this.#lastDelivered)
        : messages;
      if (fresh.length > 0) this.#emit(fresh, commit.extras);
      commit.afterDelivery();
    });
  }

  /**
   * Catches up with everything committed so far: after a (re)subscription, after a failed
   * batch, and every few seconds in case a notification was lost without a reconnect.
   */
  resync(): void {
    if (this.#stopped) return;
    // Read on the ordered connection: it sees every own batch sent before it, and none after.
    const bound = this.#db.ordered<{ id: number | string }>(NEWEST_ID_SQL, [], { timeoutMs: READ_TIMEOUT_MS })
      .then((rows) => Number(rows[0].id));
    bound.catch(() => {}); // Handled in the step.
    void this.#queue(async () => {
      let through: number;
      try {
        through = await bound;
      } catch (err) {
        if (this.#stopped) return;
        this.#log.warn("cannot check for new messages; retrying", databaseErrorFields(err));
        // One retry pending at most: every failed batch and every interval tick of an outage
        // resyncs, and a retry each would pile up into a storm of attempts and warnings.
        this.#retryTimer ??= setTimeout(() => {
          this.#retryTimer = undefined;
          this.resync();
        }, RETRY_MAX_MS);
        return;
      }
      if (through > this.#lastDelivered) await this.#catchUp(through);
    });
  }

  #notified(payload: string): void {
    const through = Number(payload);
    if (!Number.isSafeInteger(through) || through <= this.#queuedThrough) return;
    this.#queuedThrough = through;
    void this.#queue(() => this.#catchUp(through));
  }

  #queue(step: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(step).catch((err) => {
      this.#log.error("message stream step failed", { error: err });
    });
    this.#chain = next;
    return next;
  }

  /** Delivers every committed message in (last delivered, through], retrying until it can. */
  async #catchUp(through: number): Promise<void> {
    let delay = RETRY_MIN_MS;
    while (through > this.#lastDelivered) {
      let rows: StoredMessage[];
      try {
        rows = await this.#db.query<StoredMessage>(CATCH_UP_SQL, [this.#lastDelivered, through, CATCH_UP_PAGE], {
          timeoutMs: READ_TIMEOUT_MS,
        });
      } catch (err) {
        if (this.#stopped) return;
        this.#log.warn("cannot read new messages; retrying", { ...databaseErrorFields(err), retry_ms: delay });
        await this.#pause(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        continue;
      }
      if (rows.length === 0) {
        // Only holes left (aborted inserts): nothing will ever fill them.
        this.#lastDelivered = through;
        break;
      }
      this.#emit(rows, undefined);
      if (rows.length < CATCH_UP_PAGE) this.#lastDelivered = Math.max(this.#lastDelivered, through);
    }
    this.#queuedThrough = Math.max(this.#queuedThrough, this.#lastDelivered);
  }

  /** Waits `ms`, or less if the stream is stopped meanwhile. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waits.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waits.add(wake);
    });
  }

  #emit(messages: StoredMessage[], extras: Map<number, Extra> | undefined): void {
    this.#lastDelivered = messages[messages.length - 1].id;
    this.#queuedThrough = Math.max(this.#queuedThrough, this.#lastDelivered);
    try {
      this.#deliver(messages, extras);
    } catch (err) {
      this.#log.error("delivering messages failed", { error: err });
    }
  }
}
