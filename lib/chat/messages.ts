// Storing chat messages with group commit and exactly-once sends, their fan-out, and history.
//
// Contract: a message is committed before anyone receives it, and every connection receives
// messages in id order. Batches are stored through chat_store_messages() on the database's
// ordered connection, several in flight at once (pipelined: they execute and commit in the order
// they are sent), and delivered through the MessageStream, the one ordered path for this
// server's messages and every other server's.

import { ChatError, unavailable } from "../core/errors.ts";
import type { Database } from "../store/db.ts";
import { databaseErrorFields } from "../store/db.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "../core/log.ts";
import { MessageStream, type OwnBatch, type StoredMessage } from "../store/message_stream.ts";
import { Metrics } from "../core/metrics.ts";
import { encodeLine, errorReply, type HistoryQuery, type RequestId } from "../wire/protocol.ts";
import {
  type BatchReply,
  duplicateLine,
  encodeLines,
  encodeText,
  needsOwnPieces,
  newMessageLine,
  type OwnExtra,
  personalPieces,
  withExtras,
} from "./fan_out.ts";
import { type Batch, GroupCommit } from "./group_commit.ts";
import type { ReplyPlace } from "./reply_queue.ts";
import { RecentMessages } from "./recent.ts";
import type { Session, User } from "./session.ts";

/**
 * A batch the database has not confirmed by then is cancelled and its senders told unavailable,
 * so that a database that hangs (rather than fails) cannot stall every sender behind it.
 */
const COMMIT_TIMEOUT_MS = 10_000;

const STORE_BATCH_SQL = `SELECT ids, stamps, duplicates, original_texts, gap_ids, gap_senders, gap_texts,
  gap_stamps, gap_complete, through_id FROM chat_store_messages($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint)`;

const HISTORY_COLUMNS = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages WHERE id < $1::bigint AND id > $2::bigint`;
const NEWEST_SQL = `${HISTORY_COLUMNS} ORDER BY id DESC LIMIT $3`;
const OLDEST_SQL = `${HISTORY_COLUMNS} ORDER BY id ASC LIMIT $3`;
const NO_UPPER_BOUND = "9223372036854775807";

interface StoreResult extends Record<string, unknown> {
  ids: number[];
  stamps: string[];
  duplicates: boolean[];
  original_texts: (string | null)[];
  /** Other writers' rows this server had not delivered when the batch was sent. */
  gap_ids: number[];
  gap_senders: string[];
  gap_texts: string[];
  gap_stamps: string[];
  gap_complete: boolean;
  /** The highest id the batch drew. */
  through_id: number;
}

/** One accepted send, until it is answered. */
interface PendingSend {
  session: Session;
  user: User;
  text: string;
  extra: OwnExtra;
  /** Where its answer goes: its place in its connection's line of replies. */
  reply: ReplyPlace;
  /**
   * A send repeating the client_msg_id of one in the same batch: it is not stored, and gets that
   * send's message as a duplicate.
   */
  sameAs: PendingSend | undefined;
}

/** What one stored row got: its message (the original, for a duplicate). */
interface Outcome {
  message: StoredMessage;
  duplicate: boolean;
}

/** An own batch as it is delivered: every send in arrival order, and its rows' outcomes. */
interface OwnDelivery {
  sends: PendingSend[];
  outcomes: Map<PendingSend, Outcome>;
}

interface MessageStats {
  committed: number;
  failed: number;
  duplicates: number;
  batches: number;
}

export class MessageService {
  readonly #db: Database;
  readonly #hub: Hub;
  readonly #log: Logger;
  readonly #recent: RecentMessages;
  readonly #stream: MessageStream;
  readonly #commitTimeoutMs: number;
  readonly #groupCommit: GroupCommit<PendingSend>;
  /** The open batch, and its sends with a client_msg_id by user and id (repeats in it merge with them). */
  #openBatch: Batch<PendingSend> | undefined;
  #openSends = new Map<string, PendingSend>();
  /** Sends accepted and not answered yet. */
  #unanswered = 0;
  #idle: PromiseWithResolvers<void> | undefined;
  #stats: MessageStats = { committed: 0, failed: 0, duplicates: 0, batches: 0 };
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
    this.#hub = hub;
    this.#log = log;
    this.#commitTimeoutMs = commitTimeoutMs;
    this.#recent = new RecentMessages(recentCapacity);
    this.#stream = new MessageStream(db, log, (messages) => this.#deliver(messages, undefined));
    this.#groupCommit = new GroupCommit((batch) => this.#store(batch));
  }

  /** Loads the newest messages into memory and joins the stream of committed messages; once, before serving. */
  async start(): Promise<void> {
    // One row more than the window holds tells whether the database holds more than the window.
    const capacity = this.#recent.capacity;
    const rows = await this.#db.query<StoredMessage>(NEWEST_SQL, [NO_UPPER_BOUND, "-1", capacity + 1]);
    this.#recent.reset(rows.reverse(), rows.length <= capacity);
    await this.#stream.start(rows.at(-1)?.id ?? 0);
  }

  /** Stops following other servers' messages (at shutdown, after drained()). */
  stop(): void {
    this.#stream.stop();
  }

  get stats(): Readonly<MessageStats> {
    return this.#stats;
  }

  /**
   * Queues a validated message from a logged-in session. Its answer goes to `reply`, in its
   * place: its own copy of the message, the original for a repeated client_msg_id, or an error.
   */
  enqueue(
    session: Session,
    user: User,
    text: string,
    requestId: RequestId | undefined,
    clientMsgId: string | undefined,
    reply: ReplyPlace,
  ): void {
    this.#unanswered++;
    const send: PendingSend = {
      session,
      user,
      text,
      extra: { requestId, clientMsgId },
      reply: this.#counted(reply),
      sameAs: undefined,
    };
    const batch = this.#groupCommit.openBatch(text.length);
    if (batch !== this.#openBatch) {
      // Repeats of a send in an earlier batch are stored again: the database, which commits that
      // batch first on the same connection, answers them with the original.
      this.#openBatch = batch;
      this.#openSends = new Map();
    }
    const key = clientMsgId === undefined ? undefined : `${user.id}:${clientMsgId}`;
    const original = key === undefined ? undefined : this.#openSends.get(key);
    if (original) send.sameAs = original;
    else if (key !== undefined) this.#openSends.set(key, send);
    this.#groupCommit.add(batch, send, original ? 0 : text.length);
  }

  /** Settles when every accepted send has been answered (committed and delivered, or failed). */
  drained(): Promise<void> {
    if (this.#unanswered === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  async history(query: HistoryQuery): Promise<StoredMessage[]> {
    const cached = this.#recent.query(query);
    if (cached) return cached;
    const upper = query.before === undefined ? NO_UPPER_BOUND : String(query.before);
    const lower = query.after === undefined ? "-1" : String(query.after);
    try {
      if (query.after !== undefined) {
        return await this.#db.query<StoredMessage>(OLDEST_SQL, [upper, lower, query.limit]);
      }
      return (await this.#db.query<StoredMessage>(NEWEST_SQL, [upper, lower, query.limit])).reverse();
    } catch (err) {
      this.#logDatabaseError("database error reading history", err);
      throw unavailable(err);
    }
  }

  /** Stores one batch on the ordered connection and queues its delivery in the stream, in the same order. */
  #store(batch: Batch<PendingSend>): Promise<unknown> {
    const sends = batch.items;
    const rows = sends.filter((send) => send.sameAs === undefined);
    const slot = this.#stream.ownBatchSending();
    const stored = this.#db.ordered<StoreResult>(STORE_BATCH_SQL, [
      rows.map((m) => m.user.id),
      rows.map((m) => m.user.username),
      rows.map((m) => m.text),
      rows.map((m) => m.extra.clientMsgId ?? null),
      slot.seenThrough,
    ], { timeoutMs: this.#commitTimeoutMs });
    const started = performance.now();
    return stored.then(
      (result) => {
        let batch: OwnBatch;
        try {
          batch = this.#committed(sends, rows, result[0], performance.now() - started);
        } catch (err) {
          // Stored, but its outcome could not be read: its senders are still owed an answer, and
          // a catch-up delivers the messages.
          this.#log.error("reading a stored batch's outcome failed", { count: sends.length, error: err });
          this.#answerAll(sends, internalError());
          slot.failed();
          this.#stream.resync();
          return;
        }
        slot.committed(batch);
      },
      (err) => {
        this.#failed(sends, err);
        slot.failed();
      },
    );
  }

  #committed(sends: PendingSend[], rows: PendingSend[], result: StoreResult, commitMs: number): OwnBatch {
    const outcomes = new Map<PendingSend, Outcome>();
    const fresh: StoredMessage[] = [];
    for (let i = 0; i < rows.length; i++) {
      const send = rows[i];
      const id = Number(result.ids[i]);
      const duplicate = result.duplicates[i];
      const message: StoredMessage = {
        id,
        sender: send.user.username,
        message: duplicate ? result.original_texts[i] ?? "" : send.text,
        timestamp: result.stamps[i],
      };
      outcomes.set(send, { message, duplicate });
      if (!duplicate) fresh.push(message);
    }
    this.#stats.committed += fresh.length;
    this.#stats.batches++;
    this.#metrics.batchCommitted(fresh.length, commitMs);
    const others: StoredMessage[] = new Array(result.gap_ids.length);
    for (let i = 0; i < others.length; i++) {
      others[i] = {
        id: Number(result.gap_ids[i]),
        sender: result.gap_senders[i],
        message: result.gap_texts[i],
        timestamp: result.gap_stamps[i],
      };
    }
    return {
      messages: fresh,
      throughId: Number(result.through_id),
      others,
      othersComplete: result.gap_complete,
      deliver: (delivered) => this.#deliver(delivered, { sends, outcomes }),
      failed: (err) => {
        this.#log.error("delivering a stored batch failed", { count: sends.length, error: err });
        this.#answerAll(sends, internalError());
      },
    };
  }

  #failed(sends: PendingSend[], err: unknown): void {
    this.#stats.failed += sends.length;
    this.#metrics.messagesFailed.inc(sends.length);
    this.#logDatabaseError("database error storing messages; senders told unavailable", err, sends.length);
    this.#answerAll(sends, unavailable(err));
    // The batch may have committed all the same (a lost answer): deliver it if so.
    this.#stream.resync();
  }

  /** Answers every send of `sends` not answered yet with `error`. */
  #answerAll(sends: PendingSend[], error: ChatError): void {
    for (const send of sends) send.reply.answer(encodeLine(errorReply(error, send.extra.requestId)));
  }

  /**
   * Queues committed messages (id order) to every logged-in connection, encoded once for all. An
   * own batch's senders get their replies in request order inside it: their own copies (views of
   * the shared bytes around their lines) and duplicates' originals at their places.
   */
  #deliver(messages: StoredMessage[], own: OwnDelivery | undefined): void {
    this.#recent.append(messages);
    this.#metrics.deliveries.inc(messages.length * this.#hub.loggedIn);
    const debug = this.#log.enabled("debug");
    const lines: string[] = new Array(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      lines[i] = newMessageLine(m);
      if (debug) this.#log.debug("message delivered", { id: m.id, sender: m.sender, message: m.message });
    }
    if (!own) {
      if (lines.length > 0) this.#hub.broadcast(encodeText(lines.join("")));
      return;
    }
    const replies = this.#batchReplies(messages, own);
    const { bytes: shared, offsets } = encodeLines(lines);
    let personal: Map<Session, Uint8Array[]> | undefined;
    for (const [session, sessionReplies] of replies) {
      if (needsOwnPieces(sessionReplies)) {
        (personal ??= new Map()).set(session, personalPieces(shared, offsets, lines, sessionReplies));
      }
    }
    if (lines.length > 0) this.#hub.broadcast(shared, personal);
    else for (const [session, pieces] of personal ?? []) for (const piece of pieces) session.send(piece);
    for (const send of own.sends) {
      if (!send.reply.first) this.#log.error("a reply went out of request order", { session: send.session.id });
      send.reply.answeredInBand();
    }
  }

  /** Each sender's replies from an own batch, in request order. */
  #batchReplies(messages: StoredMessage[], own: OwnDelivery): Map<Session, BatchReply[]> {
    const indexOf = new Map<number, number>();
    for (let i = 0; i < messages.length; i++) indexOf.set(messages[i].id, i);
    const replies = new Map<Session, BatchReply[]>();
    for (const send of own.sends) {
      const { message, duplicate } = own.outcomes.get(send.sameAs ?? send)!;
      let reply: BatchReply;
      if (duplicate || send.sameAs) {
        this.#stats.duplicates++;
        reply = { kind: "bytes", bytes: encodeText(duplicateLine(message, send.extra)) };
      } else {
        const index = indexOf.get(message.id);
        // Delivered already by a catch-up (without the sender's own copy): sent to the sender alone.
        reply = index === undefined
          ? { kind: "bytes", bytes: encodeText(withExtras(newMessageLine(message), send.extra)) }
          : { kind: "own", index, extra: send.extra };
      }
      const list = replies.get(send.session);
      if (list) list.push(reply);
      else replies.set(send.session, [reply]);
    }
    return replies;
  }

  #logDatabaseError(msg: string, err: unknown, count?: number): void {
    this.#log.error(msg, { count, ...databaseErrorFields(err) });
  }

  /** `reply`, counting its answer towards drained(). */
  #counted(reply: ReplyPlace): ReplyPlace {
    let answered = false;
    const done = () => {
      if (answered) return;
      answered = true;
      if (--this.#unanswered === 0 && this.#idle) {
        this.#idle.resolve();
        this.#idle = undefined;
      }
    };
    return {
      get first() {
        return reply.first;
      },
      answer(bytes) {
        reply.answer(bytes);
        done();
      },
      answeredInBand() {
        reply.answeredInBand();
        done();
      },
    };
  }
}

function internalError(): ChatError {
  return new ChatError("internal_error", "Internal server error");
}
