// The one ordered stream of committed events: the lobby's messages and the events of every room
// this server follows. Every event reaches this server's clients through it, this server's own
// and other servers' alike: in each feed (the lobby, a room) strictly in id order, exactly once,
// and only after it is committed. The rest of the server does not know whether it is alone.
//
// Why id order is commit order: the lobby's writers all take one advisory lock before they draw
// ids and hold it to COMMIT (schema.sql: chat_store_batch() for servers, a trigger for any other
// INSERT into messages, such as the seed's server's), so when a batch with first id N commits,
// every id below N is committed or never will be (holes). A room's ids are drawn under its row
// lock, held to COMMIT, with no holes. Other servers' commits are announced by the bus (bus.ts:
// PostgreSQL's NOTIFY, ids only, or NATS, with the rows).
//
// Rows come from three sources, merged per feed by id:
// - Own batches, sent on the ordered connection. The database answers each with its ids and,
//   per followed feed, the other writers' rows this server had not delivered when it was sent (its
//   gap), so an own batch is delivered the moment it is answered, without another read: a
//   database that goes away right after a commit cannot hold up the answers behind it.
// - Other servers' batches carried by the bus (NATS): complete ranges (prev, last]. One that
//   arrives ahead of what is delivered (a publish overtaken by a later one, or lost) is held
//   briefly, then the gap is read from the database.
// - Catch-up reads of (last delivered, bound], where the bound is a committed id (announced, or
//   read: every few seconds, and whenever the bus may have missed something).
// A read's or the bus's rows are merged only once every own batch sent before they arrived is
// answered, so that an own message is never delivered without its sender's own copy.
//
// Contract: own batches MUST be announced (ownBatchSending) in the order they are sent on the
// ordered connection, and settled (committed or failed) in the order they are answered.

import type { Bus } from "./bus.ts";
import { type Database, databaseErrorFields } from "./db.ts";
import { CATCH_UP_PAGE, Feed, type FeedRow, RETRY_MIN_MS } from "./feed.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";

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
/**
 * How often the server checks for events it may not have been told of (a silently dead LISTEN, or
 * a quiet room's last message lost by the bus): one small query of the heads it follows. Centrifugo
 * checks positions every 40 s; 5 s keeps such a loss short for a query every 5 s. While the bus is
 * away, every second (it is then the only way news arrives).
 */
const RESYNC_INTERVAL_MS = 5000;
const RESYNC_BUS_AWAY_MS = 1000;
/** How long rows that arrived ahead of what is delivered wait for the ones before them, before those are read. */
const GAP_HOLD_MS = 150;
/** Rooms no longer followed whose last delivered id is remembered (the oldest are forgotten). */
const MAX_RETIRED_ROOMS = 10_000;
/** How long an own membership event waits for its notice from the bus before it is taken as is. */
const NOTICE_WAIT_MS = 2000;
/**
 * A catch-up read that has not answered by then is cancelled and retried. A read is at most a page
 * of rows by primary key (milliseconds); while one hangs (its connection went dark) its feed
 * delivers nothing, so it is not waited for long.
 */
const READ_TIMEOUT_MS = 3000;

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
  /**
   * `others` leaves out the rows up to this id that an earlier own batch drew (0: none): complete
   * only once the feed is delivered through it (that batch delivered them), else read.
   */
  skippedThrough?: number;
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

interface NoticeWaiter {
  id: number;
  done(): void;
}

interface Slot extends OwnBatchSlot {
  state: "sent" | "committed" | "failed";
  batch: OwnBatch | undefined;
}

export class MessageStream {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #listener: StreamListener;
  readonly #bus: Bus;
  readonly #metrics: Metrics;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #lobby: Feed;
  readonly #rooms = new Map<string, Feed>();
  /**
   * The feeds with something to do: rows known committed and not delivered, ranges held, or a read
   * under way or to retry. Only these are visited when the stream advances, so that a server
   * following thousands of quiet rooms does not walk them all for every batch.
   */
  readonly #active = new Set<Feed>();
  /** Rooms followed before, and how far they were delivered then. */
  readonly #retired = new Map<string, number>();
  /** Own batches sent and not yet delivered (or failed), in send order. */
  #own: Slot[] = [];
  #ownSent = 0;
  /** Own batches answered so far (they are answered in send order). */
  #ownAnswered = 0;
  #stopped = false;
  #resyncTimer: ReturnType<typeof setTimeout> | undefined;
  /** A resync in flight: further resyncs meanwhile are folded into it. */
  #resyncing = false;
  #resyncRetry: ReturnType<typeof setTimeout> | undefined;
  #advanceQueued = false;
  /** Own membership events in rooms not followed, waiting for their notice from the bus, by room. */
  readonly #noticeWaiters = new Map<string, Set<NoticeWaiter>>();

  constructor(db: Database, log: Logger, listener: StreamListener, bus: Bus, metrics: Metrics) {
    this.#db = db;
    this.#log = log;
    this.#listener = listener;
    this.#bus = bus;
    this.#metrics = metrics;
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
    await this.#bus.start({
      committed: (feed, id) =>
        feed === LOBBY_FEED ? this.#raise(this.#lobby, id) : this.#roomNotice(feed, id, undefined),
      rows: (feed, prev, rows) => this.#received(feed, prev, rows),
      membership: (room, id, userId) => this.#roomNotice(room, id, userId),
      signal: (payload) => this.onSignal(payload),
      suspect: () => this.resync(),
    });
    if (this.#db.kind === "postgres") this.#scheduleResync();
  }

  /** Typing notices and read-marker moves from any server (set by the chat layer). */
  onSignal: (payload: string) => void = () => {};

  /** Sends a signal to every server, this one included. */
  signal(payload: string): void {
    this.#bus.signal(payload);
  }

  /** The bus's state, for /healthz and /metrics. */
  get bus(): Bus {
    return this.#bus;
  }

  /** Resyncs every few seconds; every second while the bus is away. */
  #scheduleResync(): void {
    if (this.#stopped) return;
    this.#resyncTimer = setTimeout(() => {
      this.resync();
      this.#scheduleResync();
    }, this.#bus.state.up ? RESYNC_INTERVAL_MS : RESYNC_BUS_AWAY_MS);
  }

  /** Stops catching up; own batches still in flight are still delivered. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#resyncTimer);
    clearTimeout(this.#resyncRetry);
    clearTimeout(this.#holdTimer);
    for (const feed of [this.#lobby, ...this.#rooms.values()]) feed.stopRetry();
    for (const waiters of [...this.#noticeWaiters.values()]) for (const waiter of waiters) waiter.done();
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
    this.#bus.follow(room);
    this.#advanceSoon();
  }

  /** Stops delivering `room` (a read in flight for it is dropped). */
  unfollow(room: string): void {
    const feed = this.#rooms.get(room);
    if (!feed) return;
    feed.stopRetry();
    this.#rooms.delete(room);
    this.#active.delete(feed);
    this.#bus.unfollow(room);
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

  /**
   * Whether a followed room has events known to be committed that are not delivered yet (a
   * notice about a local user, say): it stays followed until they are, even with no local member.
   */
  hasPending(room: string): boolean {
    const feed = this.#rooms.get(room);
    return feed !== undefined &&
      (feed.target > feed.lastDelivered || feed.ranges.some((range) => range.through > feed.lastDelivered));
  }

  /** The followed rooms. */
  followedRooms(): IterableIterator<string> {
    return this.#rooms.keys();
  }

  /**
   * A room event committed by this server outside the group commit (a membership change): read up
   * to it if the room is followed, and carried by the bus to the servers that follow it. A
   * membership event in a room not followed is taken from the bus instead, in commit order (two
   * local joins committed at once must not start following the room after the earlier one); the
   * promise resolves once it is, so that the change is answered with the room followed here. If
   * the notice does not come in NOTICE_WAIT_MS (the database went away), it is taken as is.
   */
  roomCommitted(room: string, event: RoomEvent): Promise<void> {
    this.#bus.publish(room, event.id - 1, [event]);
    const feed = this.#rooms.get(room);
    const userId = event.userId;
    if (feed) this.#raise(feed, event.id);
    if (feed || event.kind === "message" || userId === null || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: NoticeWaiter = {
        id: event.id,
        done: () => {
          clearTimeout(timer);
          const waiters = this.#noticeWaiters.get(room);
          if (waiters?.delete(waiter) && waiters.size === 0) this.#noticeWaiters.delete(room);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        waiter.done();
        this.#roomNotice(room, event.id, userId);
      }, NOTICE_WAIT_MS);
      const waiters = this.#noticeWaiters.get(room) ?? new Set();
      this.#noticeWaiters.set(room, waiters.add(waiter));
      this.#bus.membership(room, event.id, userId);
    });
  }

  /**
   * Resolves once every membership notice of what committed before the call has been handed on
   * (a NOTIFY round trip): a read of memberships followed by it has seen, by then, the notice of
   * every event it saw.
   */
  noticeBarrier(): Promise<void> {
    return this.#bus.noticeBarrier();
  }

  /** The room has events committed through `id`: read up to it (a no-op unless followed). */
  expect(room: string, id: number): void {
    const feed = this.#rooms.get(room);
    if (feed) this.#raise(feed, id);
  }

  /** An own batch's committed rows of a feed: carried by the bus to the other servers. */
  published(feed: string, prev: number, rows: FeedRow[]): void {
    this.#bus.publish(feed, prev, rows);
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

  #roomNotice(room: string, id: number, userId: number | undefined): void {
    if (!Number.isSafeInteger(id)) return;
    const feed = this.#rooms.get(room);
    if (feed) this.#raise(feed, id);
    else if (userId !== undefined && Number.isSafeInteger(userId)) this.#listener.membershipElsewhere(room, id, userId);
    // Notices come in commit order: own events up to this one have had theirs.
    for (const waiter of this.#noticeWaiters.get(room) ?? []) if (waiter.id <= id) waiter.done();
  }

  /** Another server's rows of a feed, from the bus: a range to merge once what comes before it is delivered. */
  #received(key: string, prev: number, rows: FeedRow[]): void {
    const feed = this.#feed(key);
    if (!feed || rows.length === 0 || !Number.isSafeInteger(prev)) return;
    const through = rows[rows.length - 1].id;
    if (through <= feed.lastDelivered) return;
    feed.ranges.push({ from: prev, through, rows, ownBefore: this.#ownSent });
    feed.target = Math.max(feed.target, feed.lastDelivered);
    this.#active.add(feed);
    this.#advanceSoon();
  }

  #raise(feed: Feed, through: number): void {
    if (!Number.isSafeInteger(through) || through <= feed.target) return;
    feed.target = through;
    this.#active.add(feed);
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
      for (const feed of [...this.#active]) if (this.#mergeRanges(feed)) progress = true;
    }
    this.#holdGaps();
    for (const feed of [...this.#active]) {
      if (feed.wantsRead && !this.#stopped && !this.#ownOnTheWay(feed.key)) this.#startRead(feed);
      if (feed.isIdle || this.#feed(feed.key) !== feed) this.#active.delete(feed);
    }
  }

  /**
   * Whether an own batch touching the feed awaits its answer. The answer brings the feed's rows
   * from what was delivered up to its own (a commit notice that comes first is most often its own),
   * and a read's rows could not be merged before it anyway: reading now would cost a query for
   * rows that are on their way (at full ingest, one read per batch).
   */
  #ownOnTheWay(key: string): boolean {
    for (const slot of this.#own) if (slot.state === "sent" && slot.seen.has(key)) return true;
    return false;
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
        if (!feed || !hasOwnShare(key, part, head) || feed.lastDelivered >= before) continue;
        if (!part.complete || !head.seen.has(key) || feed.lastDelivered < (part.skippedThrough ?? 0)) {
          // Too many others' rows to have come with the answer (or none asked for): read them first.
          feed.target = Math.max(feed.target, before);
          this.#active.add(feed);
          blocked = true;
        }
      }
      if (blocked) return false;
      const fresh = new Map<string, FeedRow[]>();
      for (const [key, part] of batch.parts) {
        const feed = this.#feed(key);
        if (!feed || !hasOwnShare(key, part, head)) continue;
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

  /**
   * Merges the ranges of rows a feed holds (read, or from the bus) that continue what is delivered,
   * once the own batches sent before they arrived are answered. One that starts further on waits
   * GAP_HOLD_MS for the rows before it to come; then they are read from the database.
   */
  #mergeRanges(feed: Feed): boolean {
    let merged = false;
    feed.ranges.sort((a, b) => a.from - b.from);
    for (let i = 0; i < feed.ranges.length;) {
      const range = feed.ranges[i];
      if (range.through <= feed.lastDelivered) {
        feed.ranges.splice(i, 1);
        continue;
      }
      if (range.from > feed.lastDelivered || this.#ownAnswered < range.ownBefore) {
        i++;
        continue;
      }
      // An answered own batch still waiting to be delivered owns its ids: the range stops below them.
      const head = this.#own[0];
      const part = head?.state === "committed" ? head.batch!.parts.get(feed.key) : undefined;
      const cap = part ? firstIdOf(part) - 1 : Infinity;
      const through = Math.min(range.through, cap);
      if (through <= feed.lastDelivered) {
        i++;
        continue;
      }
      const rows = range.rows.filter((row) => row.id > feed.lastDelivered && row.id <= through);
      feed.lastDelivered = through;
      if (through === range.through) feed.ranges.splice(i, 1);
      merged = true;
      if (rows.length > 0) {
        try {
          feed.deliver(rows);
        } catch (err) {
          this.#log.error("delivering messages failed", { feed: feed.key, error: err });
        }
      }
    }
    if (merged && feed.gapSince !== undefined && !feed.ranges.some((r) => r.from > feed.lastDelivered)) {
      feed.gapSince = undefined;
      this.#metrics.gapsRepaired.inc();
    }
    return merged;
  }

  /** Ranges that wait for rows before them: after GAP_HOLD_MS, those rows are read from the database. */
  #holdGaps(): void {
    const now = performance.now();
    let nextCheck = Infinity;
    for (const feed of this.#active) {
      const waiting = feed.ranges.filter((r) => r.from > feed.lastDelivered);
      if (waiting.length === 0) continue;
      if (feed.gapSince === undefined) {
        feed.gapSince = now;
        this.#metrics.gapsDetected.inc();
      }
      const due = feed.gapSince + GAP_HOLD_MS;
      if (now >= due) feed.target = Math.max(feed.target, Math.min(...waiting.map((r) => r.from)));
      else nextCheck = Math.min(nextCheck, due);
    }
    if (nextCheck !== Infinity && this.#holdTimer === undefined && !this.#stopped) {
      this.#holdTimer = setTimeout(() => {
        this.#holdTimer = undefined;
        this.#advance();
      }, Math.max(1, nextCheck - now));
    }
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
        feed.ranges.push({ from, through, rows, ownBefore });
        this.#metrics.catchUpReads.inc();
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

/**
 * Whether an own part has rows for the stream to deliver: new rows of its own, or others' rows the
 * database sent with it (only for a feed followed when the batch was sent). A part with neither (a
 * refused send to a room followed only since) moves nothing: the rows up to its id are others',
 * and come by reads.
 */
function hasOwnShare(key: string, part: OwnPart, slot: Slot): boolean {
  return part.own.length > 0 || (part.complete && slot.seen.has(key));
}

/** An own part's rows not delivered yet, others' and its own, ids ascending. */
function freshRows(part: OwnPart, lastDelivered: number): FeedRow[] {
  const rows: FeedRow[] = [];
  for (const row of part.others) if (row.id > lastDelivered) rows.push(row);
  for (const row of part.own) if (row.id > lastDelivered) rows.push(row);
  return rows;
}
