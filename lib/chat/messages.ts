// Storing chat messages with group commit and exactly-once sends, their fan-out, and history.
//
// Contract: a message is committed before anyone receives it, and every connection receives
// messages in id order. Batches are stored through chat_store_messages() on the database's
// ordered connection, several in flight at once (pipelined: they execute and commit in the order
// they are sent), and delivered through the MessageStream, the one ordered path for this
// server's messages and every other server's.

import { unavailable } from "../core/errors.ts";
import type { Database } from "../store/db.ts";
import { databaseErrorFields } from "../store/db.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "../core/log.ts";
import { MessageStream, type OwnCommit, type StoredMessage } from "../store/message_stream.ts";
import { Metrics } from "../core/metrics.ts";
import { encodeLine, errorReply, type HistoryQuery, type RequestId } from "../wire/protocol.ts";
import { RecentMessages } from "./recent.ts";
import type { Session, User } from "./session.ts";

/** Upper bounds of one batch, so one statement stays a reasonable size. */
const MAX_BATCH_MESSAGES = 1000;
const MAX_BATCH_CHARS = 512_000;
/**
 * Batches on their way to the database at once. A second one is sent before the first returns
 * only when it is already large: every batch costs each connection a write, so small batches are
 * better gathered while one is in flight (group commit), and pipelining pays only under load.
 */
const MAX_BATCHES_IN_FLIGHT = 2;
const MIN_PIPELINED_BATCH = 128;
/**
 * A batch the database has not confirmed by then is cancelled and its senders told unavailable,
 * so that a database that hangs (rather than fails) cannot stall every sender behind it.
 */
export const COMMIT_TIMEOUT_MS = 10_000;

const STORE_BATCH_SQL = `SELECT ids, stamps, duplicates, original_texts
  FROM chat_store_messages($1::int[], $2::text[], $3::text[], $4::text[])`;

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
}

/** One accepted send, until it is answered. */
interface PendingSend {
  session: Session;
  user: User;
  text: string;
  requestId: RequestId | undefined;
  clientMsgId: string | undefined;
  /** Sends with the same client_msg_id that arrived while this one was in flight. */
  repeats: PendingSend[] | undefined;
  settle(): void;
}

/** The key of a send with a client_msg_id among the unanswered ones: the id is per user. */
function unansweredKey(send: PendingSend): string {
  return `${send.user.id}:${send.clientMsgId}`;
}

/** What the sender's own copy of a new message adds to the shared line. */
interface OwnExtra {
  session: Session;
  requestId: RequestId | undefined;
  clientMsgId: string | undefined;
}

interface Batch {
  items: PendingSend[];
  chars: number;
}

export interface MessageStats {
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
  readonly #stream: MessageStream<OwnExtra>;
  readonly #commitTimeoutMs: number;
  /** Batches not yet sent to the database; the last one takes new messages while under the bounds. */
  readonly #waiting: Batch[] = [];
  /** Batches sent to the database and not answered yet. */
  #inFlight = 0;
  /** Batches whose delivery step in the stream has not run yet. */
  #undelivered = 0;
  #flushScheduled = false;
  /** Sends with a client_msg_id between acceptance and answer, by user and id. */
  readonly #unanswered = new Map<string, PendingSend>();
  #idle = Promise.withResolvers<void>();
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
    this.#stream = new MessageStream(db, log, (messages, extras) => this.#fanOut(messages, extras));
    this.#idle.resolve();
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
   * Queues a validated message from a logged-in session. The promise settles once the sender
   * has its answer (its own copy of the message, the original for a repeated client_msg_id, or
   * `unavailable`); it never rejects.
   */
  enqueue(
    session: Session,
    user: User,
    text: string,
    requestId: RequestId | undefined,
    clientMsgId: string | undefined,
  ): Promise<void> {
    const answered = Promise.withResolvers<void>();
    const send: PendingSend = {
      session,
      user,
      text,
      requestId,
      clientMsgId,
      repeats: undefined,
      settle: answered.resolve,
    };
    if (clientMsgId !== undefined) {
      const key = unansweredKey(send);
      const original = this.#unanswered.get(key);
      if (original) {
        // The same send again while the first is in flight: it gets the first one's outcome.
        (original.repeats ??= []).push(send);
        return answered.promise;
      }
      this.#unanswered.set(key, send);
    }
    const batch = this.#openBatch(text.length);
    batch.items.push(send);
    batch.chars += text.length;
    if (this.#inFlight === 0 && this.#undelivered === 0 && !this.#flushScheduled) {
      this.#idle = Promise.withResolvers<void>();
    }
    this.#scheduleFlush();
    return answered.promise;
  }

  /** Settles when every queued message has been committed and delivered, or failed. */
  drained(): Promise<void> {
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

  #openBatch(chars: number): Batch {
    const last = this.#waiting.at(-1);
    if (last && last.items.length < MAX_BATCH_MESSAGES && last.chars + chars <= MAX_BATCH_CHARS) return last;
    const batch: Batch = { items: [], chars: 0 };
    this.#waiting.push(batch);
    return batch;
  }

  /**
   * Sends the next batch when it should go. After a quiet spell: one macrotask later, so that the
   * sends of this turn share it. While a batch is in flight: at once when it returns (what came
   * meanwhile is the next batch), or before that if the waiting batch is already large.
   */
  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#inFlight >= MAX_BATCHES_IN_FLIGHT || this.#waiting.length === 0) return;
    if (this.#inFlight > 0) {
      if (this.#waiting[0].items.length >= MIN_PIPELINED_BATCH) this.#send(this.#waiting.shift()!);
      return;
    }
    this.#flushScheduled = true;
    setTimeout(() => {
      this.#flushScheduled = false;
      const batch = this.#waiting.shift();
      if (batch) this.#send(batch);
    }, 0);
  }

  /** Sends one batch to the database and queues its delivery in the stream, in the same order. */
  #send(batch: Batch): void {
    this.#inFlight++;
    const { items } = batch;
    const stored = this.#db.ordered<StoreResult>(STORE_BATCH_SQL, [
      items.map((m) => m.user.id),
      items.map((m) => m.user.username),
      items.map((m) => m.text),
      items.map((m) => m.clientMsgId ?? null),
    ], { timeoutMs: this.#commitTimeoutMs });
    const started = performance.now();
    const committed = stored.then(
      (rows) => this.#committed(items, rows[0], performance.now() - started),
      (err) => {
        this.#failed(items, err);
        throw err;
      },
    );
    // The next batch goes once the database has answered this one (whatever the stream is doing:
    // while it waits out an outage, senders must still get their answers).
    void committed.then(() => this.#answeredByDatabase(), () => this.#answeredByDatabase());
    this.#undelivered++;
    void this.#stream.own(committed).finally(() => {
      this.#undelivered--;
      this.#maybeIdle();
    });
  }

  #answeredByDatabase(): void {
    this.#inFlight--;
    const next = this.#waiting.shift();
    if (next) this.#send(next);
    else this.#maybeIdle();
  }

  /** Resolves drained() once nothing is waiting, in flight or undelivered. */
  #maybeIdle(): void {
    if (this.#inFlight === 0 && this.#undelivered === 0 && this.#waiting.length === 0 && !this.#flushScheduled) {
      this.#idle.resolve();
    }
  }

  #committed(items: PendingSend[], result: StoreResult, commitMs: number): OwnCommit<OwnExtra> {
    const messages: StoredMessage[] = [];
    const extras = new Map<number, OwnExtra>();
    const repeated: { send: PendingSend; original: StoredMessage }[] = [];
    let throughId = 0;
    for (let i = 0; i < items.length; i++) {
      const send = items[i];
      const id = Number(result.ids[i]);
      throughId = Math.max(throughId, id);
      const timestamp = result.stamps[i];
      if (result.duplicates[i]) {
        const original = { id, sender: send.user.username, message: result.original_texts[i] ?? "", timestamp };
        repeated.push({ send, original });
        continue;
      }
      const message = { id, sender: send.user.username, message: send.text, timestamp };
      messages.push(message);
      extras.set(id, send);
      for (const repeat of send.repeats ?? []) repeated.push({ send: repeat, original: message });
    }
    this.#stats.committed += messages.length;
    this.#stats.batches++;
    this.#metrics.batchCommitted(messages.length, commitMs);
    return {
      messages,
      extras,
      throughId,
      afterDelivery: () => {
        for (const { send, original } of repeated) {
          this.#stats.duplicates++;
          send.session.send(encodeText(duplicateLine(original, send)));
          // A repeat of a send that was itself a repeat of an earlier batch's message.
          for (const repeat of send.repeats ?? []) repeat.session.send(encodeText(duplicateLine(original, repeat)));
        }
        this.#answered(items);
      },
    };
  }

  #failed(items: PendingSend[], err: unknown): void {
    this.#stats.failed += items.length;
    this.#metrics.messagesFailed.inc(items.length);
    this.#logDatabaseError("database error storing messages; senders told unavailable", err, items.length);
    const failure = unavailable(err);
    for (const send of items) {
      send.session.send(encodeLine(errorReply(failure, send.requestId)));
      for (const repeat of send.repeats ?? []) repeat.session.send(encodeLine(errorReply(failure, repeat.requestId)));
    }
    this.#answered(items);
    // The batch may have committed all the same (a lost answer): deliver it if so.
    this.#stream.resync();
  }

  #answered(items: PendingSend[]): void {
    for (const send of items) {
      if (send.clientMsgId !== undefined) this.#unanswered.delete(unansweredKey(send));
      send.settle();
      for (const repeat of send.repeats ?? []) repeat.settle();
    }
  }

  /**
   * Queues committed messages (id order) to every logged-in connection: encoded once for all;
   * a sender's own copy is the shared bytes around its own lines (views, not copies).
   */
  #fanOut(messages: StoredMessage[], extras: Map<number, OwnExtra> | undefined): void {
    this.#recent.append(messages);
    this.#metrics.deliveries.inc(messages.length * this.#hub.loggedIn);
    const debug = this.#log.enabled("debug");
    const lines: string[] = new Array(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      lines[i] = newMessageLine(m);
      if (debug) this.#log.debug("message delivered", { id: m.id, sender: m.sender, message: m.message });
    }
    const own = extras && extras.size > 0 ? ownLines(messages, lines, extras) : undefined;
    if (!own) {
      this.#hub.broadcast(encodeText(lines.join("")));
      return;
    }
    const { bytes: shared, offsets } = encodeLines(lines);
    const personal = new Map<Session, Uint8Array[]>();
    for (const [session, indexes] of own) {
      const pieces: Uint8Array[] = [];
      let at = 0;
      for (const i of indexes) {
        if (offsets[i] > at) pieces.push(shared.subarray(at, offsets[i]));
        pieces.push(encodeText(withExtras(lines[i], extras!.get(messages[i].id)!)));
        at = offsets[i + 1];
      }
      if (at < shared.length) pieces.push(shared.subarray(at));
      personal.set(session, pieces);
    }
    this.#hub.broadcast(shared, personal);
  }

  #logDatabaseError(msg: string, err: unknown, count?: number): void {
    this.#log.error(msg, { count, ...databaseErrorFields(err) });
  }
}

/** Per sender whose copy differs (a request_id or client_msg_id to add), the indexes of its lines. */
function ownLines(
  messages: StoredMessage[],
  lines: string[],
  extras: Map<number, OwnExtra>,
): Map<Session, number[]> | undefined {
  let own: Map<Session, number[]> | undefined;
  for (let i = 0; i < lines.length; i++) {
    const extra = extras.get(messages[i].id);
    if (!extra || (extra.requestId === undefined && extra.clientMsgId === undefined)) continue;
    own ??= new Map();
    const list = own.get(extra.session);
    if (list) list.push(i);
    else own.set(extra.session, [i]);
  }
  return own;
}

const utf8 = new TextEncoder();

function encodeText(text: string): Uint8Array {
  return utf8.encode(text);
}

/** The lines encoded one after another, and where each starts (`offsets[lines.length]` is the end). */
function encodeLines(lines: string[]): { bytes: Uint8Array; offsets: Int32Array } {
  let chars = 0;
  for (const line of lines) chars += line.length;
  // Room for ASCII, the usual case; more (3 bytes per UTF-16 unit at most) if a line needs it.
  let bytes = new Uint8Array(chars);
  const offsets = new Int32Array(lines.length + 1);
  let at = 0;
  let encodedChars = 0;
  for (let i = 0; i < lines.length; i++) {
    offsets[i] = at;
    let result = utf8.encodeInto(lines[i], bytes.subarray(at));
    if (result.read < lines[i].length) {
      // Enough for every line left, this one included, whatever they hold: grown once at most.
      const larger = new Uint8Array(at + 3 * (chars - encodedChars));
      larger.set(bytes.subarray(0, at));
      bytes = larger;
      result = utf8.encodeInto(lines[i], bytes.subarray(at));
    }
    at += result.written;
    encodedChars += lines[i].length;
  }
  offsets[lines.length] = at;
  return { bytes: bytes.subarray(0, at), offsets };
}

function newMessageLine(m: StoredMessage): string {
  // Built by hand: the hottest serialisation in the server (one per message, fields in the contract's order).
  return `{"type":"new_message","id":${m.id},"sender":${JSON.stringify(m.sender)},"message":${
    JSON.stringify(m.message)
  },"timestamp":${JSON.stringify(m.timestamp)}}\n`;
}

/** The sender's own copy of a new_message line: the same line with its request_id and client_msg_id. */
function withExtras(
  line: string,
  extra: { requestId: RequestId | undefined; clientMsgId: string | undefined },
): string {
  // request_id last, where clients that read it without parsing the line (the bench) expect it.
  let tail = "";
  if (extra.clientMsgId !== undefined) tail += `,"client_msg_id":${JSON.stringify(extra.clientMsgId)}`;
  if (extra.requestId !== undefined) tail += `,"request_id":${JSON.stringify(extra.requestId)}`;
  return `${line.slice(0, -2)}${tail}}\n`;
}

/** The answer to a repeated client_msg_id: the original message, to this connection alone. */
function duplicateLine(original: StoredMessage, send: PendingSend): string {
  return withExtras(`${newMessageLine(original).slice(0, -2)},"duplicate":true}\n`, send);
}
