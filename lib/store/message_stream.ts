// The one ordered stream of committed events: the lobby's messages and the events of every room
// this server follows. Every event reaches this server's clients through it, this server's own
// and other servers' alike: in each feed (the lobby, a room) strictly in id order, exactly once,
// and only after it is committed. The rest of the server does not know whether it is alone.
//
// Why id order is commit order: the lobby's writers all take one advisory lock before they draw
// ids and hold it to COMMIT (schema.sql: chat_store_batch() for servers, a trigger for any other
// INSERT into messages, such as the seed's server's), so when a batch with first id N commits,
// every id below N is committed or never will be (holes). A room's ids are drawn under its row
// lock, held to COMMIT, with no holes. Commits are announced by NOTIFY: the lobby's last id on
// chat_messages, 'room:id[:user]' on chat_rooms.
//
// Two sources of rows, merged per feed:
// - Own batches, sent on the ordered connection. The database answers each with its ids and,
//   per followed feed, the other writers' rows this server had not delivered when it was sent (its
//   gap), so an own batch is delivered the moment it is answered, without another read: a
//   database that goes away right after a commit cannot hold up the answers behind it.
// - Catch-up reads of (last delivered, bound], where the bound is a committed id (notified, or
//   read). A read's rows are merged only once every own batch sent before the read was issued is
//   answered, so that an own message is never delivered without its sender's own copy.
//
// Contract: own batches MUST be announced (ownBatchSending) in the order they are sent on the
// ordered connection, and settled (committed or failed) in the order they are answered.

import { type Database, databaseErrorFields } from "./db.ts";
import { CATCH_UP_PAGE, Feed, type FeedRow, RETRY_MIN_MS } from "./feed.ts";
import type { Logger } from "../core/log.ts";

/** A lobby message as stored and as clients see it. */
export interface StoredMessage extends Record<string, unknown> {
  id: number;
  sender: string;
  message: string;
  timestamp: string;
}

/** A room's event as stored: a message, or a membership event about `username`. */
export interface RoomEvent extends Record<string, unknown> {
  id: number;
  kind: "message" | "join" | "leave" | "invite" | "kick";
  /** The sender, or the member the event is about. */
  userId: number | null;
  username: string;
  /** A message's text. */
  body: string | null;
  /** Who made a membership event. */
  by: string | null;
  timestamp: string;
}

export const LOBBY_FEED = "lobby";
const LOBBY_CHANNEL = "chat_messages";
const ROOMS_CHANNEL = "chat_rooms";
/** How often the server checks for events it may not have been told of (a silently dead LISTEN). */
const RESYNC_INTERVAL_MS = 5000;
/** Rooms no longer followed whose last delivered id is remembered (the oldest are forgotten). */
const MAX_RETIRED_ROOMS = 10_000;
/** A catch-up read that has not answered by then is cancelled and retried. */
const READ_TIMEOUT_MS = 10_000;

const LOBBY_CATCH_UP_SQL = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages WHERE id > $1::bigint AND id <= $2::bigint ORDER BY id LIMIT $3`;
const LOBBY_HEAD_SQL = `SELECT COALESCE(max(id), 0)::bigint AS id FROM messages`;
export const ROOM_EVENT_COLUMNS = `id, kind, user_id AS "userId", username, body, by_username AS by,
  to_char(created_at, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp`;
const ROOM_CATCH_UP_SQL = `SELECT ${ROOM_EVENT_COLUMNS} FROM chat_room_events
  WHERE room_id = $1::text AND id > $2::bigint AND id <= $3::bigint ORDER BY id LIMIT $4`;
const ROOM_HEADS_SQL = `SELECT id, last_id FROM chat_rooms WHERE id = ANY ($1::text[])`;

/** An own batch's part in one feed. */
export interface OwnPart<Row extends FeedRow = FeedRow> {
  /** Its new rows, ids ascending. */
  own: Row[];
  /** The feed's id after the batch: its last own row's, or the last id it drew or saw. */
  throughId: number;
  /** Other writers' rows between what the server had seen and the batch's own, ids ascending. */
  others: Row[];
  /** Whether `others` is all of them (else the stream reads them first). */
  complete: boolean;
}

/** What an own batch committed, for its delivery. */
export interface OwnBatch {
  /** By feed: "lobby" or a room id. */
  parts: Map<string, OwnPart>;
  /**
   * Delivers the batch (its senders' replies included) once everything before it is delivered:
   * `fresh` holds, for each feed this server follows, the rows not delivered yet, others' and its
   * own, ids ascending.
   */
  deliver(fresh: Map<string, FeedRow[]>): void;
  /** Runs instead, when delivering threw: the batch's senders are still owed an answer. */
  failed(err: unknown): void;
}

/** An own batch between its sending and its answer. */
export interface OwnBatchSlot {
  /** For each feed of the batch that this server follows: the highest id delivered when it was sent. */
  readonly seen: ReadonlyMap<string, number>;
  committed(batch: OwnBatch): void;
  /** The batch failed (it may have committed all the same: a catch-up then delivers it). */
  failed(): void;
}

/** What the stream hands to the chat layer. */
export interface StreamListener {
  deliverLobby(rows: StoredMessage[]): void;
  deliverRoom(room: string, events: RoomEvent[]): void;
  /** A membership event about `userId` in a room this server does not follow (it may have to). */
  membershipElsewhere(room: string, id: number, userId: number): void;
}

interface Slot extends OwnBatchSlot {
  state: "sent" | "committed" | "failed";
  batch: OwnBatch | undefined;
}

export class MessageStream {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #listener: StreamListener;
  readonly #lobby: Feed;
  readonly #rooms = new Map<string, Feed>();
  /** Rooms followed before, and how far they were delivered then. */
  readonly #retired = new Map<string, number>();
  /** Own batches sent and not yet delivered (or failed), in send order. */
  #own: Slot[] = [];
  #ownSent = 0;
  /** Own batches answered so far (they are answered in send order). */
  #ownAnswered = 0;
  #stopped = false;
  #resyncTimer: ReturnType<typeof setInterval> | undefined;
  /** A resync in flight: further resyncs meanwhile are folded into it. */
  #resyncing = false;
  #resyncRetry: ReturnType<typeof setTimeout> | undefined;
  #advanceQueued = false;

  constructor(db: Database, log: Logger, listener: StreamListener) {
    this.#db = db;
    this.#log = log;
    this.#listener = listener;
    this.#lobby = new Feed(
      LOBBY_FEED,
      0,
      (after, through, limit) => db.query<StoredMessage>(LOBBY_CATCH_UP_SQL, [after, through, limit], READ_OPTIONS),
      (rows) => listener.deliverLobby(rows as StoredMessage[]),
    );
  }

  /**
   * Starts the lobby from `lastId` (everything up to it counts as delivered) and subscribes to
   * other servers' commits; every (re)subscription is followed by a catch-up.
   */
  async start(lastId: number): Promise<void> {
    this.#lobby.lastDelivered = lastId;
    this.#lobby.target = lastId;
    await this.#db.listen(ROOMS_CHANNEL, (payload) => this.#roomNotified(payload), () => this.resync());
    await this.#db.listen(LOBBY_CHANNEL, (payload) => this.#raise(this.#lobby, Number(payload)), () => this.resync());
    if (this.#db.kind === "postgres") {
      this.#resyncTimer = setInterval(() => this.resync(), RESYNC_INTERVAL_MS);
    }
  }

  /** Stops catching up; own batches still in flight are still delivered. */
  stop(): void {
    this.#stopped = true;
    if (this.#resyncTimer !== undefined) clearInterval(this.#resyncTimer);
    clearTimeout(this.#resyncRetry);
    for (const feed of [this.#lobby, ...this.#rooms.values()]) feed.stopRetry();
  }

  /**
   * Starts delivering `room`'s events after id `from` (a no-op if it is followed already), or after
   * what was delivered when it was last followed, if that is further: an event is delivered once.
   */
  follow(room: string, from: number): void {
    if (this.#rooms.has(room)) return;
    const retired = this.#retired.get(room);
    this.#retired.delete(room);
    if (retired !== undefined) from = Math.max(from, retired);
    const feed = new Feed(
      room,
      from,
      async (after, through, limit) =>
        (await this.#db.query<RoomEvent>(ROOM_CATCH_UP_SQL, [room, after, through, limit], READ_OPTIONS)).map(
          (event) => ({ ...event, id: Number(event.id) }),
        ),
      (events) => this.#listener.deliverRoom(room, events as RoomEvent[]),
    );
    this.#rooms.set(room, feed);
    this.#advanceSoon();
  }

  /** Stops delivering `room` (a read in flight for it is dropped). */
  unfollow(room: string): void {
    const feed = this.#rooms.get(room);
    if (!feed) return;
    feed.stopRetry();
    this.#rooms.delete(room);
    this.#retired.set(room, feed.lastDelivered);
    // Forgets the oldest: a notice that old about a room followed that long ago is not expected.
    if (this.#retired.size > MAX_RETIRED_ROOMS) this.#retired.delete(this.#retired.keys().next().value!);
  }

  /** How far a room no longer followed was delivered when it was (undefined: not known). */
  retiredThrough(room: string): number | undefined {
    return this.#retired.get(room);
  }

  isFollowing(room: string): boolean {
    return this.#rooms.has(room);
  }

  /** How far a followed room is delivered (undefined when it is not followed). */
  deliveredThrough(room: string): number | undefined {
    return this.#rooms.get(room)?.lastDelivered;
  }

  /** The followed rooms. */
  followedRooms(): IterableIterator<string> {
    return this.#rooms.keys();
  }

  /**
   * A room event committed by this server outside the group commit (a membership change): handled
   * as its notification is (the embedded database has none).
   */
  roomCommitted(room: string, id: number, userId?: number): void {
    this.#roomNotice(room, id, userId);
  }

  /**
   * Announces an own batch about to be sent on the ordered connection, touching `feeds`. MUST be
   * called in send order, and the slot settled (committed or failed) in answer order.
   */
  ownBatchSending(feeds: Iterable<string>): OwnBatchSlot {
    const seen = new Map<string, number>();
    for (const key of feeds) {
      const feed = this.#feed(key);
      if (feed) seen.set(key, feed.lastDelivered);
    }
    const settle = (state: "committed" | "failed", batch?: OwnBatch) => {
      if (slot.state !== "sent") return;
      slot.state = state;
      slot.batch = batch;
      this.#ownAnswered++;
      this.#advance();
    };
    const slot: Slot = {
      seen,
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
   * Catches up with everything committed so far: after a (re)subscription, after a failed batch,
   * and every few seconds in case a notification was lost without a reconnect.
   */
  resync(): void {
    if (this.#stopped || this.#resyncing) return;
    this.#resyncing = true;
    const rooms = [...this.#rooms.keys()];
    // The lobby's bound is read on the ordered connection, in line with own batches.
    const lobby = this.#db.ordered<{ id: number | string }>(LOBBY_HEAD_SQL, [], READ_OPTIONS);
    const heads = rooms.length === 0
      ? Promise.resolve([])
      : this.#db.query<{ id: string; last_id: number | string }>(ROOM_HEADS_SQL, [rooms], READ_OPTIONS);
    Promise.all([lobby, heads]).then(
      ([lobbyRows, headRows]) => {
        this.#resyncing = false;
        this.#raise(this.#lobby, Number(lobbyRows[0].id));
        for (const row of headRows) {
          const feed = this.#rooms.get(row.id);
          if (feed) this.#raise(feed, Number(row.last_id));
        }
      },
      (err) => {
        this.#resyncing = false;
        if (this.#stopped) return;
        this.#log.warn("cannot check for new messages; retrying", databaseErrorFields(err));
        this.#resyncRetry ??= setTimeout(() => {
          this.#resyncRetry = undefined;
          this.resync();
        }, 1000);
      },
    );
  }

  #feed(key: string): Feed | undefined {
    return key === LOBBY_FEED ? this.#lobby : this.#rooms.get(key);
  }

  #roomNotified(payload: string): void {
    const [room, id, user] = payload.split(":");
    this.#roomNotice(room, Number(id), user === undefined ? undefined : Number(user));
  }

  #roomNotice(room: string, id: number, userId: number | undefined): void {
    if (!Number.isSafeInteger(id)) return;
    const feed = this.#rooms.get(room);
    if (feed) this.#raise(feed, id);
    else if (userId !== undefined && Number.isSafeInteger(userId)) this.#listener.membershipElsewhere(room, id, userId);
  }

  #raise(feed: Feed, through: number): void {
    if (!Number.isSafeInteger(through) || through <= feed.target) return;
    feed.target = through;
    this.#advanceSoon();
  }

  /** Advances once the notices of this turn are in, so that one read covers them all. */
  #advanceSoon(): void {
    if (this.#advanceQueued) return;
    this.#advanceQueued = true;
    queueMicrotask(() => {
      this.#advanceQueued = false;
      this.#advance();
    });
  }

  /** Delivers whatever can be delivered now, in id order, and starts the reads that are needed next. */
  #advance(): void {
    let progress = true;
    while (progress) {
      progress = this.#deliverOwnHead();
      for (const feed of this.#feeds()) if (this.#mergeRead(feed)) progress = true;
    }
    for (const feed of this.#feeds()) if (feed.wantsRead && !this.#stopped) this.#startRead(feed);
  }

  *#feeds(): Generator<Feed> {
    yield this.#lobby;
    yield* this.#rooms.values();
  }

  /** Delivers the oldest own batch if it is answered and nothing before it is missing. */
  #deliverOwnHead(): boolean {
    const head = this.#own[0];
    if (!head || head.state === "sent") return false;
    if (head.state === "committed") {
      const batch = head.batch!;
      let blocked = false;
      for (const [key, part] of batch.parts) {
        const feed = this.#feed(key);
        const before = firstIdOf(part) - 1;
        if (!feed || feed.lastDelivered >= before) continue;
        if (!part.complete || !head.seen.has(key)) {
          // Too many others' rows to have come with the answer (or none asked for): read them first.
          feed.target = Math.max(feed.target, before);
          blocked = true;
        }
      }
      if (blocked) return false;
      const fresh = new Map<string, FeedRow[]>();
      for (const [key, part] of batch.parts) {
        const feed = this.#feed(key);
        if (!feed) continue;
        fresh.set(key, freshRows(part, feed.lastDelivered));
        feed.lastDelivered = Math.max(feed.lastDelivered, part.throughId);
        feed.target = Math.max(feed.target, feed.lastDelivered);
      }
      try {
        batch.deliver(fresh);
      } catch (err) {
        batch.failed(err);
      }
    }
    this.#own.shift();
    return true;
  }

  /** Merges a feed's catch-up read once the own batches sent before it are answered. */
  #mergeRead(feed: Feed): boolean {
    const read = feed.result;
    if (!read || this.#ownAnswered < read.ownBefore) return false;
    feed.result = undefined;
    // An answered own batch still waiting to be delivered owns its ids: the read stops below them.
    const head = this.#own[0];
    const part = head?.state === "committed" ? head.batch!.parts.get(feed.key) : undefined;
    const cap = part ? firstIdOf(part) - 1 : Infinity;
    const through = Math.min(read.through, cap);
    if (through <= feed.lastDelivered) return true;
    const rows = read.rows.filter((row) => row.id > feed.lastDelivered && row.id <= through);
    feed.lastDelivered = through;
    if (rows.length > 0) {
      try {
        feed.deliver(rows);
      } catch (err) {
        this.#log.error("delivering messages failed", { feed: feed.key, error: err });
      }
    }
    return true;
  }

  #startRead(feed: Feed): void {
    const from = feed.lastDelivered;
    const bound = feed.target;
    const ownBefore = this.#ownSent;
    feed.reading = true;
    feed.read(from, bound, CATCH_UP_PAGE).then(
      (rows) => {
        feed.reading = false;
        if (this.#feed(feed.key) !== feed) return;
        feed.retryDelay = RETRY_MIN_MS;
        // A full page may stop short of the bound: what it covers ends at its last row.
        const through = rows.length === CATCH_UP_PAGE ? rows[rows.length - 1].id : bound;
        feed.result = { rows, through, ownBefore };
        this.#advance();
      },
      (err) => {
        feed.reading = false;
        if (this.#stopped || this.#feed(feed.key) !== feed) return;
        const delay = feed.nextRetryDelay();
        this.#log.warn("cannot read new messages; retrying", {
          feed: feed.key === LOBBY_FEED ? LOBBY_FEED : "room",
          ...databaseErrorFields(err),
          retry_ms: delay,
        });
        feed.retryTimer = setTimeout(() => {
          feed.retryTimer = undefined;
          this.#advance();
        }, delay);
      },
    );
  }
}

const READ_OPTIONS = { timeoutMs: READ_TIMEOUT_MS };

/** The first id an own part covers: its first new row's, or (no new row) its last. */
function firstIdOf(part: OwnPart): number {
  return part.own.length > 0 ? part.own[0].id : part.throughId;
}

/** An own part's rows not delivered yet, others' and its own, ids ascending. */
function freshRows(part: OwnPart, lastDelivered: number): FeedRow[] {
  const rows: FeedRow[] = [];
  for (const row of part.others) if (row.id > lastDelivered) rows.push(row);
  for (const row of part.own) if (row.id > lastDelivered) rows.push(row);
  return rows;
}
