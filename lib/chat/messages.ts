// Storing sends, to the lobby and to rooms, with group commit and exactly-once client_msg_ids,
// and answering each sender in its place.
//
// Contract: a message is committed before anyone receives it, and every connection receives each
// conversation's messages in id order. Batches are stored through chat_store_batch() on the
// database's ordered connection, several in flight at once (pipelined: they execute and commit in
// the order they are sent), and delivered through the MessageStream, the one ordered path for
// this server's messages and every other server's. A batch holds one conversation per sending
// connection, so that each sender's replies in it go out with that conversation's delivery.

import { ChatError, unavailable } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import { type Database, databaseErrorFields } from "../store/db.ts";
import type { FeedRow } from "../store/feed.ts";
import {
  LOBBY_FEED,
  MessageStream,
  type OwnBatch,
  type OwnPart,
  type RoomEvent,
  type StoredMessage,
} from "../store/message_stream.ts";
import type { Bus } from "../store/bus.ts";
import { encodeLine, errorReply, type HistoryQuery, type RequestId } from "../wire/protocol.ts";
import {
  duplicateLine,
  encodeText,
  lobbyLineV2,
  newMessageLine,
  type OwnExtra,
  type PendingReply,
  sendRemaining,
} from "./fan_out.ts";
import { type Batch, GroupCommit } from "./group_commit.ts";
import type { Lobby } from "./lobby.ts";
import type { ReplyPlace } from "./reply_queue.ts";
import { deniedSend } from "./room_access.ts";
import { type RoomDelivery, roomEventLine } from "./room_delivery.ts";
import type { Session, User } from "./session.ts";

/**
 * A batch the database has not confirmed by then is cancelled and its senders told unavailable,
 * so that a database that hangs (rather than fails) cannot stall every sender behind it.
 */
const COMMIT_TIMEOUT_MS = 10_000;

const STORE_BATCH_SQL = `SELECT * FROM chat_store_batch($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],
  $6::bigint, $7::text[], $8::bigint[])`;

/**
 * chat_store_batch()'s answer (schema.sql): in its arrays, 0 and "" stand for none. Every row is
 * new and stored at `batch_stamp` but the exceptions, listed by their 1-based position.
 */
interface StoreResult extends Record<string, unknown> {
  ids: (number | string)[];
  batch_stamp: string;
  ex_ords: number[];
  ex_statuses: ("dup" | "denied")[];
  ex_stamps: string[];
  ex_rooms: string[];
  ex_texts: string[];
  ex_denials: string[];
  lobby_through: number | string | null;
  /** The lobby's last row before this batch's first (what a bus carrying the batch says it follows). */
  lobby_prev: number | string | null;
  /** Others' lobby rows before this batch's: [id, sender, text, timestamp] (JSON). */
  gap_rows: [number, string, string, string][] | null;
  gap_complete: boolean | null;
  /** The gap leaves out the previous own batch's ids up to this one (0: none). */
  gap_skipped_through: number | string | null;
  room_list: string[] | null;
  room_heads: (number | string)[] | null;
  /** Others' room events before this batch's: [room, id, kind, user id, username, body, by, timestamp] (JSON). */
  rg_rows: [string, number, RoomEvent["kind"], number | null, string, string | null, string | null, string][] | null;
  rg_incomplete: string[] | null;
  /** By room (room_list's order): the gap leaves out the previous own batch's ids up to this one (0: none). */
  rg_skipped_through: (number | string)[] | null;
}

/** One accepted send, until it is answered. */
interface PendingSend {
  session: Session;
  user: User;
  /** Its conversation: "lobby" or a room id. */
  feed: string;
  text: string;
  extra: OwnExtra;
  /** Where its answer goes: its place in its connection's line of replies. */
  reply: ReplyPlace;
  /** Answered (counted towards drained()); a place ignores a second answer, and so does the count. */
  answered: boolean;
  /**
   * A send repeating the client_msg_id of one in the same batch: it is not stored, and gets that
   * send's message as a duplicate.
   */
  sameAs: PendingSend | undefined;
  /**
   * Its part of the batch: a part holds at most one conversation per sender, and a sender's send
   * to another conversation starts the next part. Parts are delivered in order, so that each
   * sender's replies go out in request order, woven into their conversations' deliveries.
   */
  segment: number;
}

/** What one stored row got. */
type Outcome =
  | { status: "new"; id: number; timestamp: string }
  | { status: "dup"; original: StoredMessage; room: string }
  | { status: "denied"; error: ChatError };

interface MessageStats {
  committed: number;
  failed: number;
  duplicates: number;
  batches: number;
}

export class MessageService {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #lobby: Lobby;
  readonly #rooms: RoomDelivery;
  readonly #stream: MessageStream;
  readonly #commitTimeoutMs: number;
  readonly #groupCommit: GroupCommit<PendingSend>;
  /** The open batch; its sends with a client_msg_id by user and id; each sender's conversation in its open part. */
  #openBatch: Batch<PendingSend> | undefined;
  #openSends = new Map<string, PendingSend>();
  #openFeeds = new Map<Session, string>();
  #openSegment = 0;
  /** Sends accepted and not answered yet. */
  #unanswered = 0;
  #idle: PromiseWithResolvers<void> | undefined;
  #stats: MessageStats = { committed: 0, failed: 0, duplicates: 0, batches: 0 };
  readonly #metrics: Metrics;

  constructor(
    db: Database,
    lobby: Lobby,
    rooms: RoomDelivery,
    log: Logger,
    bus: Bus,
    commitTimeoutMs = COMMIT_TIMEOUT_MS,
    metrics = new Metrics(),
  ) {
    this.#db = db;
    this.#lobby = lobby;
    this.#rooms = rooms;
    this.#log = log;
    this.#metrics = metrics;
    this.#commitTimeoutMs = commitTimeoutMs;
    this.#stream = new MessageStream(
      db,
      log,
      {
        deliverLobby: (rows) => lobby.deliver(rows),
        deliverRoom: (room, events) => rooms.deliver(room, events),
        membershipElsewhere: (room, id, userId) => rooms.membershipElsewhere(room, id, userId),
      },
      bus,
      metrics,
    );
    rooms.attach(this.#stream);
    this.#groupCommit = new GroupCommit((batch) => this.#store(batch));
  }

  /** The stream every committed event is delivered through. */
  get stream(): MessageStream {
    return this.#stream;
  }

  /** Loads the lobby's newest messages and joins the stream of committed events; once, before serving. */
  async start(): Promise<void> {
    await this.#stream.start(await this.#lobby.load());
  }

  /** Stops following other servers' messages (at shutdown, after drained()). */
  stop(): void {
    this.#stream.stop();
    this.#rooms.stop();
  }

  get stats(): Readonly<MessageStats> {
    return this.#stats;
  }

  /**
   * Queues a validated message from a logged-in session to `feed` (the lobby or a room). Its
   * answer goes to `reply`, in its place: its own copy of the message, the original for a
   * repeated client_msg_id, or an error.
   */
  enqueue(
    session: Session,
    user: User,
    feed: string,
    text: string,
    requestId: RequestId | undefined,
    clientMsgId: string | undefined,
    reply: ReplyPlace,
  ): void {
    this.#unanswered++;
    const send: PendingSend = {
      session,
      user,
      feed,
      text,
      extra: { requestId, clientMsgId },
      reply,
      answered: false,
      sameAs: undefined,
      segment: 0,
    };
    const batch = this.#groupCommit.openBatch(text.length);
    if (batch !== this.#openBatch) {
      // Repeats of a send in an earlier batch are stored again: the database, which commits that
      // batch first on the same connection, answers them with the original.
      this.#openBatch = batch;
      this.#openSends = new Map();
      this.#openFeeds = new Map();
      this.#openSegment = 0;
    }
    // One conversation per sender in a part: a send to another one starts the batch's next part
    // (a sender writing to several rooms in turn still shares one transaction with everyone).
    const sendersFeed = this.#openFeeds.get(session);
    if (sendersFeed !== undefined && sendersFeed !== feed) {
      this.#openSegment++;
      this.#openFeeds = new Map();
    }
    send.segment = this.#openSegment;
    this.#openFeeds.set(session, feed);
    const key = clientMsgId === undefined ? undefined : `${user.id}:${clientMsgId}`;
    const original = key === undefined ? undefined : this.#openSends.get(key);
    if (original) send.sameAs = original;
    else if (key !== undefined) this.#openSends.set(key, send);
    this.#groupCommit.add(batch, send, original ? 0 : text.length);
  }

  /** The lobby's history (get_history without a room). */
  history(query: HistoryQuery): Promise<StoredMessage[]> {
    return this.#lobby.history(query);
  }

  /** Settles when every accepted send has been answered (committed and delivered, or failed). */
  drained(): Promise<void> {
    if (this.#unanswered === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /** Stores one batch on the ordered connection and hands its outcome to the stream, in the same order. */
  #store(batch: Batch<PendingSend>): Promise<unknown> {
    const sends = batch.items;
    const rows = sends.filter((send) => send.sameAs === undefined);
    const slot = this.#stream.ownBatchSending(new Set(rows.map((r) => r.feed)));
    const seenRooms = [...slot.seen.keys()].filter((key) => key !== LOBBY_FEED);
    const stored = this.#db.ordered<StoreResult>(STORE_BATCH_SQL, [
      rows.map((m) => (m.feed === LOBBY_FEED ? null : m.feed)),
      rows.map((m) => m.user.id),
      rows.map((m) => m.user.username),
      rows.map((m) => m.text),
      rows.map((m) => m.extra.clientMsgId ?? null),
      slot.seen.get(LOBBY_FEED) ?? 0,
      seenRooms,
      seenRooms.map((room) => slot.seen.get(room)!),
    ], { timeoutMs: this.#commitTimeoutMs });
    const started = performance.now();
    return stored.then(
      (result) => {
        let batch: OwnBatch;
        try {
          batch = this.#committed(sends, rows, result[0], new Set(seenRooms), performance.now() - started);
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

  #committed(
    sends: PendingSend[],
    rows: PendingSend[],
    result: StoreResult,
    seenRooms: ReadonlySet<string>,
    commitMs: number,
  ): OwnBatch {
    const outcomes = new Map<PendingSend, Outcome>();
    const parts = new Map<string, OwnPart>();
    const lobbyOwn: StoredMessage[] = [];
    const roomOwn = new Map<string, RoomEvent[]>();
    const exceptions = new Map<number, number>();
    for (let k = 0; k < result.ex_ords.length; k++) exceptions.set(result.ex_ords[k] - 1, k);
    for (let i = 0; i < rows.length; i++) {
      const send = rows[i];
      const k = exceptions.get(i);
      const status = k === undefined ? "new" : result.ex_statuses[k];
      if (status === "denied") {
        outcomes.set(send, { status, error: deniedSend(result.ex_denials[k!] || "missing") });
        continue;
      }
      const id = Number(result.ids[i]);
      const timestamp = k === undefined ? result.batch_stamp : result.ex_stamps[k];
      if (status === "dup") {
        const room = result.ex_rooms[k!] || LOBBY_FEED;
        const original = { id, sender: send.user.username, message: result.ex_texts[k!], timestamp };
        outcomes.set(send, { status, original, room });
        continue;
      }
      outcomes.set(send, { status, id, timestamp });
      if (send.feed === LOBBY_FEED) {
        lobbyOwn.push({ id, sender: send.user.username, message: send.text, timestamp });
      } else {
        const event: RoomEvent = {
          id,
          kind: "message",
          userId: send.user.id,
          username: send.user.username,
          body: send.text,
          by: null,
          timestamp,
        };
        const list = roomOwn.get(send.feed);
        if (list) list.push(event);
        else roomOwn.set(send.feed, [event]);
      }
    }
    if (result.lobby_through !== null) {
      parts.set(LOBBY_FEED, {
        own: lobbyOwn,
        throughId: Number(result.lobby_through),
        others: lobbyGap(result),
        complete: result.gap_complete === true,
        skippedThrough: Number(result.gap_skipped_through ?? 0),
      });
    }
    const gaps = roomGaps(result);
    const incomplete = new Set(result.rg_incomplete ?? []);
    (result.room_list ?? []).forEach((room, i) => {
      parts.set(room, {
        own: roomOwn.get(room) ?? [],
        throughId: Number(result.room_heads![i]),
        others: gaps.get(room) ?? [],
        complete: seenRooms.has(room) && !incomplete.has(room),
        skippedThrough: Number(result.rg_skipped_through?.[i] ?? 0),
      });
    });
    // Committed: the other servers get the rows by the bus (NATS; NOTIFY announced them already).
    if (lobbyOwn.length > 0) this.#stream.published(LOBBY_FEED, Number(result.lobby_prev), lobbyOwn);
    for (const [room, events] of roomOwn) this.#stream.published(room, events[0].id - 1, events);
    const fresh = lobbyOwn.length + [...roomOwn.values()].reduce((n, list) => n + list.length, 0);
    this.#stats.committed += fresh;
    this.#stats.batches++;
    this.#metrics.batchCommitted(fresh, commitMs);
    return {
      parts,
      deliver: (delivered) => this.#deliver(sends, outcomes, delivered),
      failed: (err) => {
        this.#log.error("delivering a stored batch failed", { count: sends.length, error: err });
        this.#answerAll(sends, internalError());
      },
    };
  }

  /**
   * Delivers an own batch part by part, and in each part conversation by conversation, each
   * sender's replies woven into its own. A conversation's rows go with the part of its own rows
   * (other writers' rows, which come before them, with its first part).
   */
  #deliver(sends: PendingSend[], outcomes: Map<PendingSend, Outcome>, delivered: Map<string, FeedRow[]>): void {
    const parts = sends.at(-1)!.segment + 1;
    const partOfId = new Map<string, Map<number, number>>();
    const firstPart = new Map<string, number>();
    for (const send of sends) {
      if (!firstPart.has(send.feed)) firstPart.set(send.feed, send.segment);
      const outcome = outcomes.get(send);
      if (send.sameAs || outcome?.status !== "new") continue;
      let ids = partOfId.get(send.feed);
      if (!ids) partOfId.set(send.feed, ids = new Map());
      ids.set(outcome.id, send.segment);
    }
    // Each delivered row's part: its own send's; another writer's row, that of the next own row
    // (they all come before the batch's own), else the feed's first part.
    const rowsByPart: Map<string, FeedRow[]>[] = Array.from({ length: parts }, () => new Map());
    for (const [feed, rows] of delivered) {
      const ids = partOfId.get(feed);
      let next = firstPart.get(feed) ?? 0;
      const partOf: number[] = new Array(rows.length);
      for (let i = rows.length - 1; i >= 0; i--) {
        const own = ids?.get(rows[i].id);
        if (own !== undefined) next = own;
        partOf[i] = next;
      }
      for (let i = 0; i < rows.length; i++) {
        const byFeed = rowsByPart[partOf[i]];
        const list = byFeed.get(feed);
        if (list) list.push(rows[i]);
        else byFeed.set(feed, [rows[i]]);
      }
    }
    const repliesByPart: Map<string, Map<Session, PendingReply[]>>[] = Array.from({ length: parts }, () => new Map());
    for (const send of sends) {
      const byFeed = repliesByPart[send.segment];
      let replies = byFeed.get(send.feed);
      if (!replies) byFeed.set(send.feed, replies = new Map());
      const list = replies.get(send.session);
      const reply = this.#pendingReply(send, outcomes.get(send.sameAs ?? send)!);
      if (list) list.push(reply);
      else replies.set(send.session, [reply]);
    }
    const untouched = new Set(delivered.keys());
    for (let part = 0; part < parts; part++) {
      const rowsOf = rowsByPart[part];
      const repliesOf = repliesByPart[part];
      // Every followed conversation of the batch is delivered at least once (in the last part).
      const feeds = new Set([...rowsOf.keys(), ...repliesOf.keys()]);
      if (part === parts - 1) { for (const feed of untouched) feeds.add(feed); }
      for (const feed of feeds) {
        const replies = repliesOf.get(feed);
        if (!delivered.has(feed)) {
          // A conversation this server does not follow (a room its sender just left, say): replies alone.
          for (const [session, list] of replies ?? []) sendRemaining(session, list, { at: 0 });
          continue;
        }
        untouched.delete(feed);
        const rows = rowsOf.get(feed) ?? [];
        if (feed === LOBBY_FEED) this.#lobby.deliver(rows as StoredMessage[], replies);
        else this.#rooms.deliver(feed, rows as RoomEvent[], replies);
      }
    }
    for (const send of sends) {
      if (!send.reply.first) this.#log.error("a reply went out of request order", { session: send.session.id });
      send.reply.answeredInBand();
      this.#done(send);
    }
  }

  /** What `send` is answered with, as its conversation's delivery will carry it. */
  #pendingReply(send: PendingSend, outcome: Outcome): PendingReply {
    if (outcome.status === "denied") {
      return { kind: "bytes", bytes: encodeLine(errorReply(outcome.error, send.extra.requestId)) };
    }
    if (outcome.status === "dup" || send.sameAs) {
      this.#stats.duplicates++;
      const { original, room } = outcome.status === "dup"
        ? outcome
        : { original: this.#messageOf(send.sameAs!, outcome), room: send.sameAs!.feed };
      return { kind: "bytes", bytes: encodeText(duplicateLine(original, send.extra, room, send.session.protocol)) };
    }
    const id = outcome.id;
    // Built only if no delivery carries it (the batch's own copies are views of the shared bytes).
    const line = () => {
      const message = this.#messageOf(send, outcome);
      return send.feed === LOBBY_FEED
        ? (send.session.protocol === 2 ? lobbyLineV2(message) : newMessageLine(message))
        : roomEventLine(send.feed, {
          id,
          kind: "message",
          userId: send.user.id,
          username: message.sender,
          body: message.message,
          by: null,
          timestamp: message.timestamp,
        });
    };
    return { kind: "own", id, extra: send.extra, line };
  }

  #messageOf(send: PendingSend, outcome: Outcome & { status: "new" }): StoredMessage {
    return { id: outcome.id, sender: send.user.username, message: send.text, timestamp: outcome.timestamp };
  }

  #failed(sends: PendingSend[], err: unknown): void {
    this.#stats.failed += sends.length;
    this.#metrics.messagesFailed.inc(sends.length);
    this.#log.error("database error storing messages; senders told unavailable", {
      count: sends.length,
      ...databaseErrorFields(err),
    });
    this.#answerAll(sends, unavailable(err));
    // The batch may have committed all the same (a lost answer): deliver it if so.
    this.#stream.resync();
  }

  /** Answers every send of `sends` not answered yet with `error`. */
  #answerAll(sends: PendingSend[], error: ChatError): void {
    for (const send of sends) {
      send.reply.answer(encodeLine(errorReply(error, send.extra.requestId)));
      this.#done(send);
    }
  }

  /** Counts `send` answered towards drained(), once. */
  #done(send: PendingSend): void {
    if (send.answered) return;
    send.answered = true;
    if (--this.#unanswered === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }
}

function lobbyGap(result: StoreResult): StoredMessage[] {
  const rows = result.gap_rows ?? [];
  const gap: StoredMessage[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const [id, sender, message, timestamp] = rows[i];
    gap[i] = { id: Number(id), sender, message, timestamp };
  }
  return gap;
}

function roomGaps(result: StoreResult): Map<string, RoomEvent[]> {
  const gaps = new Map<string, RoomEvent[]>();
  for (const [room, id, kind, userId, username, body, by, timestamp] of result.rg_rows ?? []) {
    const event: RoomEvent = { id: Number(id), kind, userId: userId ?? null, username, body, by, timestamp };
    const list = gaps.get(room);
    if (list) list.push(event);
    else gaps.set(room, [event]);
  }
  return gaps;
}

function internalError(): ChatError {
  return new ChatError("internal_error", "Internal server error");
}
