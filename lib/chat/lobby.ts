// The lobby: v1's one conversation, stored in `messages`. Its history (the newest messages served
// from memory) and its fan-out to every logged-in connection: v1 connections get v1's frames, v2
// connections the same with "room":"lobby". Encoded once per version for every recipient.

import { unavailable } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { type Database, databaseErrorFields } from "../store/db.ts";
import type { StoredMessage } from "../store/message_stream.ts";
import type { HistoryQuery } from "../wire/protocol.ts";
import {
  encodeLines,
  lobbyLineV2,
  needsOwnPieces,
  newMessageLine,
  type PendingReply,
  personalPieces,
  sendRemaining,
  takeRunReplies,
} from "./fan_out.ts";
import type { Hub } from "./hub.ts";
import { RecentMessages } from "./recent.ts";
import type { Session } from "./session.ts";

const HISTORY_COLUMNS = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages WHERE id < $1::bigint AND id > $2::bigint`;
const NEWEST_SQL = `${HISTORY_COLUMNS} ORDER BY id DESC LIMIT $3`;
const OLDEST_SQL = `${HISTORY_COLUMNS} ORDER BY id ASC LIMIT $3`;
const NO_UPPER_BOUND = "9223372036854775807";

/** A lobby message's line for a connection of `protocol`. */
export function lobbyLine(m: StoredMessage, protocol: 1 | 2): string {
  return protocol === 2 ? lobbyLineV2(m) : newMessageLine(m);
}

export class Lobby {
  readonly #db: Database;
  readonly #hub: Hub;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #recent: RecentMessages;

  /** `recentCapacity`: how many of the newest messages history serves from memory (MAX_HISTORY_LIMIT). */
  constructor(db: Database, hub: Hub, log: Logger, metrics: Metrics, recentCapacity: number) {
    this.#db = db;
    this.#hub = hub;
    this.#log = log;
    this.#metrics = metrics;
    this.#recent = new RecentMessages(recentCapacity);
  }

  /** Loads the newest messages into memory; returns the newest id (the stream starts after it). */
  async load(): Promise<number> {
    // One row more than the window holds tells whether the database holds more than the window.
    const capacity = this.#recent.capacity;
    const rows = await this.#db.query<StoredMessage>(NEWEST_SQL, [NO_UPPER_BOUND, "-1", capacity + 1]);
    this.#recent.reset(rows.reverse(), rows.length <= capacity);
    return rows.at(-1)?.id ?? 0;
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
      this.#log.error("database error reading history", databaseErrorFields(err));
      throw unavailable(err);
    }
  }

  /**
   * Queues committed messages (the next ones, id order) to every logged-in connection, encoded once
   * per protocol version. `replies`: an own batch's senders' replies in the lobby, in request
   * order, woven in (own copies as views of the shared bytes around their lines).
   */
  deliver(messages: StoredMessage[], replies?: ReadonlyMap<Session, readonly PendingReply[]>): void {
    if (messages.length > 0) this.#recent.append(messages);
    this.#metrics.deliveries.inc(messages.length * this.#hub.loggedIn);
    if (this.#log.enabled("debug")) {
      for (const m of messages) {
        this.#log.debug("message delivered", { id: m.id, sender: m.sender, message: m.message });
      }
    }
    const v1Lines = messages.map(newMessageLine);
    const v1 = encodeLines(v1Lines);
    // The v2 encoding only when someone gets it.
    const v2Lines = this.#hub.loggedInV2 > 0 ? messages.map(lobbyLineV2) : v1Lines;
    const v2 = v2Lines === v1Lines ? v1 : encodeLines(v2Lines);
    let personal: Map<Session, Uint8Array[]> | undefined;
    const leftOver: [Session, readonly PendingReply[], { at: number }][] = [];
    if (replies) {
      const indexOf = new Map<number, number>();
      for (let i = 0; i < messages.length; i++) indexOf.set(messages[i].id, i);
      for (const [session, list] of replies) {
        const cursor = { at: 0 };
        const online = this.#hub.isOnline(session) && messages.length > 0;
        const taken = online ? takeRunReplies(list, cursor, indexOf) : [];
        if (needsOwnPieces(taken)) {
          const [lines, encoded] = session.protocol === 2 ? [v2Lines, v2] : [v1Lines, v1];
          (personal ??= new Map()).set(session, personalPieces(encoded.bytes, encoded.offsets, lines, taken));
        }
        if (cursor.at < list.length) leftOver.push([session, list, cursor]);
      }
    }
    if (messages.length > 0) this.#hub.broadcast(v1.bytes, v2.bytes, personal);
    // Replies the broadcast did not carry (a batch of repeats only, say): to their senders alone.
    for (const [session, list, cursor] of leftOver) sendRemaining(session, list, cursor);
  }
}
