// search (contract v2): messages whose text matches, newest first, over the lobby and the rooms
// the user may read now (or one room), never anything get_history would refuse them. Access is
// room_access.ts's; rate-limited per user.

import { ChatError, unavailable } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { TokenBuckets } from "../core/rate_limit.ts";
import { databaseErrorFields } from "../store/db.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { SearchCursor, SearchHit, SearchScope, SearchStore } from "../store/search.ts";
import { field, type Frame, type Reply } from "../wire/protocol.ts";
import { LOBBY, roomOf } from "../wire/room_fields.ts";
import type { RoomService } from "./rooms.ts";
import type { User } from "./session.ts";

export interface SearchLimits {
  searchLimitBurst: number;
  /** 0 turns the limit off. */
  searchLimitPerMin: number;
}

const MAX_QUERY_LENGTH = 200;
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100;
/** A cursor: the last result's time (µs since the epoch; empty for a lobby message with no time), room and id. */
const CURSOR_PATTERN = /^(-?\d{1,19})?:(lobby|[rd]_[a-z0-9]{20}):(\d{1,18})$/;
const MIN_MICROS = -(2n ** 63n);
const MAX_MICROS = 2n ** 63n - 1n;

export class SearchService {
  readonly #store: SearchStore;
  readonly #roomStore: RoomStore;
  readonly #rooms: RoomService;
  readonly #log: Logger;
  readonly #rate: TokenBuckets;

  constructor(store: SearchStore, roomStore: RoomStore, rooms: RoomService, log: Logger, limits: SearchLimits) {
    this.#store = store;
    this.#roomStore = roomStore;
    this.#rooms = rooms;
    this.#log = log;
    this.#rate = new TokenBuckets(limits.searchLimitPerMin / 60, limits.searchLimitBurst);
  }

  async search(user: User, frame: Frame): Promise<Reply> {
    const query = queryOf(frame);
    const limit = limitOf(frame);
    const cursor = cursorOf(frame);
    const room = field(frame, "room") === undefined || field(frame, "room") === null ? undefined : roomOf(frame);
    const waitMs = this.#rate.take(String(user.id));
    if (waitMs > 0) throw new ChatError("rate_limited", "Too many searches, slow down", { retryAfterMs: waitMs });
    const scope = await this.#scope(user, room);
    let hits: SearchHit[];
    try {
      hits = await this.#store.search(query, scope, limit + 1, cursor);
    } catch (err) {
      this.#log.error("database error searching", databaseErrorFields(err));
      throw unavailable(err);
    }
    const shown = hits.slice(0, limit);
    const reply: Reply = {
      type: "search_response",
      query,
      results: shown.map((hit) => ({
        type: "new_message",
        room: hit.room,
        id: hit.id,
        sender: hit.sender,
        message: hit.message,
        timestamp: hit.timestamp,
      })),
    };
    const last = shown.at(-1);
    if (hits.length > limit && last) reply.next = `${last.micros ?? ""}:${last.room}:${last.id}`;
    return reply;
  }

  /** Where the user may search: one room they may read, or the lobby and every room they are in now. */
  async #scope(user: User, room: string | undefined): Promise<SearchScope> {
    if (room === LOBBY) return { lobby: true, rooms: [] };
    if (room !== undefined) {
      const facts = await this.#rooms.authorized(user, room, "read");
      const member = facts.role === "owner" || facts.role === "member";
      // A history:"joined" room from the member's latest join on; to a visitor, nothing.
      if (facts.history === "joined" && !member) return { lobby: false, rooms: [] };
      return { lobby: false, rooms: [{ room, fromId: facts.history === "joined" ? facts.joinedId ?? 0 : 0 }] };
    }
    try {
      const rooms = await this.#roomStore.readableRooms(user.id);
      return { lobby: true, rooms };
    } catch (err) {
      this.#log.error("database error searching", databaseErrorFields(err));
      throw unavailable(err);
    }
  }
}

function queryOf(frame: Frame): string {
  const value = field(frame, "query");
  if (typeof value !== "string") throw new ChatError("bad_request", "query must be a string");
  const query = value.trim();
  let length = 0;
  for (const _ of query) if (++length > MAX_QUERY_LENGTH) break;
  if (length === 0 || length > MAX_QUERY_LENGTH) {
    throw new ChatError("bad_request", `query must be 1 to ${MAX_QUERY_LENGTH} characters`);
  }
  if (query.includes("\0") || !query.isWellFormed()) throw new ChatError("bad_request", "query must be plain text");
  return query;
}

function limitOf(frame: Frame): number {
  const value = field(frame, "limit");
  if (value === undefined || value === null) return DEFAULT_LIMIT;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
    throw new ChatError("bad_request", `limit must be an integer from 1 to ${MAX_LIMIT}`);
  }
  return value;
}

function cursorOf(frame: Frame): SearchCursor | undefined {
  const value = field(frame, "before");
  if (value === undefined || value === null) return undefined;
  const match = typeof value === "string" ? CURSOR_PATTERN.exec(value) : null;
  const micros = match?.[1] ?? null;
  // Only a lobby message can have no time; a time must fit the database's bigint.
  const timeValid = micros === null
    ? match?.[2] === LOBBY
    : BigInt(micros) >= MIN_MICROS && BigInt(micros) <= MAX_MICROS;
  if (!match || !timeValid) throw new ChatError("bad_request", "before must be a search_response's next");
  return { micros, room: match[2], id: Number(match[3]) };
}
