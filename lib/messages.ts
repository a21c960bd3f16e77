// Storing and broadcasting chat messages with group commit, and reading history.
// Imports errors, protocol, recent, hub, session, log and db (its interface and errors only).
//
// Contract: a message is committed before it is broadcast; all connections receive messages in
// id order. Both follow from one rule: batches are flushed one at a time (MUST NOT overlap), each
// batch is one INSERT … RETURNING, and its broadcast is queued before the next batch starts.

import { unavailable } from "./errors.ts";
import type { Database } from "./db.ts";
import { DatabaseError } from "./db.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { encodeLine, errorReply, type HistoryQuery, type RequestId } from "./protocol.ts";
import { RecentMessages, type StoredMessage } from "./recent.ts";
import type { Session, User } from "./session.ts";

/** Upper bounds of one batch, so one INSERT stays a reasonable size. */
const MAX_BATCH_MESSAGES = 1000;
const MAX_BATCH_CHARS = 512_000;
/**
 * A batch the database has not confirmed by then is cancelled and its senders told unavailable,
 * so that a database that hangs (rather than fails) cannot stall every sender behind it.
 */
export const COMMIT_TIMEOUT_MS = 10_000;

// unnest keeps the input order, so RETURNING lists the new ids in the order of the batch.
const INSERT_BATCH_SQL = `INSERT INTO messages (sender_id, content, timestamp)
  SELECT sender_id, content, now() AT TIME ZONE 'UTC' FROM unnest($1::int[], $2::text[]) AS t(sender_id, content)
  RETURNING id, to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp`;

const HISTORY_COLUMNS = `SELECT m.id, COALESCE(u.username, '') AS sender, m.content AS message,
  to_char(m.timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages m LEFT JOIN users u ON u.id = m.sender_id
  WHERE m.id < $1::bigint AND m.id > $2::bigint`;
const NEWEST_SQL = `${HISTORY_COLUMNS} ORDER BY m.id DESC LIMIT $3`;
const OLDEST_SQL = `${HISTORY_COLUMNS} ORDER BY m.id ASC LIMIT $3`;
const NO_UPPER_BOUND = "9223372036854775807";

export type HistoryMessage = StoredMessage;

interface PendingMessage {
  session: Session;
  user: User;
  text: string;
  requestId: RequestId | undefined;
}

interface Batch {
  items: PendingMessage[];
  chars: number;
  done: Promise<void>;
  settle: () => void;
}

export class MessageService {
  readonly #db: Database;
  readonly #hub: Hub;
  readonly #log: Logger;
  /** Sealed batches first; the last one is open for new messages while it is under the bounds. */
  readonly #batches: Batch[] = [];
  #flushing = false;
  #idle: Promise<void> = Promise.resolve();
  #markIdle: () => void = () => {};
  #stats = { committed: 0, failed: 0, batches: 0 };
  readonly #recent: RecentMessages;
  readonly #commitTimeoutMs: number;
  readonly #metrics: Metrics;

  /** `recentCapacity`: how many of the newest messages history serves from memory (MAX_HISTORY_LIMIT). */
  constructor(
    db: Database,
    hub: Hub,
    log: Logger,
    recentCapacity: number,
    commitTimeoutMs = COMMIT_TIMEOUT_MS,
    metrics = new Metrics(),
  ) {
    this.#db = db;
    this.#metrics = metrics;
    this.#commitTimeoutMs = commitTimeoutMs;
    this.#hub = hub;
    this.#log = log;
    this.#recent = new RecentMessages(recentCapacity);
  }

  /** Loads the newest messages into memory; call once at start-up, before serving. */
  async loadRecent(): Promise<void> {
    // One row more than the window holds tells whether the database holds more than the window.
    const capacity = this.#recent.capacity;
    const rows = await this.#db.query<HistoryMessage>(NEWEST_SQL, [NO_UPPER_BOUND, "-1", capacity + 1]);
    this.#recent.reset(rows.reverse(), rows.length <= capacity);
  }

  get stats(): Readonly<{ committed: number; failed: number; batches: number }> {
    return this.#stats;
  }

  /**
   * Queues a validated message from a logged-in session. The session's `lastSend` settles once
   * it is broadcast (or answered with `unavailable`); the caller does not wait for it.
   */
  enqueue(session: Session, user: User, text: string, requestId: RequestId | undefined): void {
    const batch = this.#openBatch(text.length);
    batch.items.push({ session, user, text, requestId });
    batch.chars += text.length;
    session.pendingSends++;
    session.lastSend = batch.done;
    if (!this.#flushing) {
      this.#flushing = true;
      this.#idle = new Promise((resolve) => this.#markIdle = resolve);
      // One macrotask later, so the sends that arrived in the same tick share the first batch.
      setTimeout(() => this.#flush(), 0);
    }
  }

  /** Settles when every queued message has been committed and broadcast, or failed. */
  drained(): Promise<void> {
    return this.#idle;
  }

  async history(query: HistoryQuery): Promise<HistoryMessage[]> {
    const cached = this.#recent.query(query);
    if (cached) return cached;
    const upper = query.before === undefined ? NO_UPPER_BOUND : String(query.before);
    const lower = query.after === undefined ? "-1" : String(query.after);
    try {
      if (query.after !== undefined) {
        return await this.#db.query<HistoryMessage>(OLDEST_SQL, [upper, lower, query.limit]);
      }
      const rows = await this.#db.query<HistoryMessage>(NEWEST_SQL, [upper, lower, query.limit]);
      return rows.reverse();
    } catch (err) {
      this.#logDatabaseError("database error reading history", err);
      throw unavailable(err);
    }
  }

  #openBatch(chars: number): Batch {
    const last = this.#batches.at(-1);
    if (last && last.items.length < MAX_BATCH_MESSAGES && last.chars + chars <= MAX_BATCH_CHARS) return last;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => settle = resolve);
    const batch: Batch = { items: [], chars: 0, done, settle };
    this.#batches.push(batch);
    return batch;
  }

  async #flush(): Promise<void> {
    try {
      for (let batch = this.#batches.shift(); batch; batch = this.#batches.shift()) {
        await this.#commit(batch);
      }
    } finally {
      this.#flushing = false;
      this.#markIdle();
    }
  }

  async #commit(batch: Batch): Promise<void> {
    const { items } = batch;
    try {
      let rows: { id: number; timestamp: string }[];
      const started = performance.now();
      try {
        rows = await this.#db.query(INSERT_BATCH_SQL, [items.map((m) => m.user.id), items.map((m) => m.text)], {
          timeoutMs: this.#commitTimeoutMs,
        });
      } catch (err) {
        this.#stats.failed += items.length;
        this.#metrics.messagesFailed.inc(items.length);
        this.#logDatabaseError("database error storing messages; senders told unavailable", err, items.length);
        const failure = unavailable(err);
        for (const item of items) item.session.send(encodeLine(errorReply(failure, item.requestId)));
        return;
      }
      this.#stats.committed += items.length;
      this.#stats.batches++;
      this.#metrics.batchCommitted(items.length, performance.now() - started);
      this.#broadcast(items, rows);
    } finally {
      for (const item of items) item.session.pendingSends--;
      batch.settle();
    }
  }

  /** One encoded buffer for everyone; only senders that used request_id get a copy of their own. */
  #broadcast(items: PendingMessage[], rows: { id: number; timestamp: string }[]): void {
    const lines: string[] = new Array(items.length);
    let personalOwners: Map<Session, number[]> | undefined;
    for (let i = 0; i < items.length; i++) {
      const { user, text, requestId, session } = items[i];
      lines[i] = newMessageLine(rows[i].id, user.username, text, rows[i].timestamp);
      if (requestId !== undefined) {
        personalOwners ??= new Map();
        const own = personalOwners.get(session);
        if (own) own.push(i);
        else personalOwners.set(session, [i]);
      }
      if (this.#log.enabled("debug")) {
        this.#log.debug("message stored", { id: rows[i].id, sender: user.username, message: text });
      }
    }
    this.#recent.append(items.map((item, i) => ({
      id: rows[i].id,
      sender: item.user.username,
      message: item.text,
      timestamp: rows[i].timestamp,
    })));
    const encoder = new TextEncoder();
    const shared = encoder.encode(lines.join(""));
    let personal: Map<Session, Uint8Array> | undefined;
    if (personalOwners) {
      personal = new Map();
      for (const [session, indexes] of personalOwners) {
        const own = lines.slice();
        for (const i of indexes) own[i] = withRequestId(lines[i], items[i].requestId!);
        personal.set(session, encoder.encode(own.join("")));
      }
    }
    this.#metrics.deliveries.inc(items.length * this.#hub.size);
    this.#hub.broadcast(shared, personal);
  }

  #logDatabaseError(msg: string, err: unknown, count?: number): void {
    this.#log.error(msg, {
      count,
      sql_state: err instanceof DatabaseError ? err.sqlState : undefined,
      error: err instanceof Error ? err.message : String(err),
    });
  }
}

function newMessageLine(id: number, sender: string, message: string, timestamp: string): string {
  // Built by hand: the hottest serialisation in the server (one per message, fields in the contract's order).
  return `{"type":"new_message","id":${id},"sender":${JSON.stringify(sender)},"message":${
    JSON.stringify(message)
  },"timestamp":${JSON.stringify(timestamp)}}\n`;
}

/** The sender's own copy of a new_message line: the same line with its request_id. */
function withRequestId(line: string, requestId: RequestId): string {
  return `${line.slice(0, -2)},"request_id":${JSON.stringify(requestId)}}\n`;
}
